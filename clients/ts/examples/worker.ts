// A Worker-like object whose module (examples/echo-worker.ts) runs in its own sandbox.
import { SandboxedWorker } from "bunker";

const worker = new SandboxedWorker(new URL("./echo-worker.ts", import.meta.url));
const reply = new Promise((resolve) => {
  worker.onmessage = (event) => resolve(event.data);
});
worker.postMessage({ hello: "sandbox" });
console.log(await reply); // { echo: { hello: "sandbox" }, pid: 3 }: a pid of its own pid namespace
worker.terminate();
await worker.exited;

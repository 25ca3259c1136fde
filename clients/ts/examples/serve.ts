// A Bun server whose handler (examples/hello-handler.ts) answers each request in a sandbox.
import { serve } from "bunker";

const server = serve({ port: 0, handler: new URL("./hello-handler.ts", import.meta.url) });
const response = await fetch(new URL("/hi", server.url), { method: "POST", body: "from the example" });
console.log(response.status, await response.json());
server.stop();

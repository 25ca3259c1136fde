// The module of examples/worker.ts: it runs in its own sandbox.
self.onmessage = (event: MessageEvent) => {
  postMessage({ echo: event.data, pid: process.pid });
};

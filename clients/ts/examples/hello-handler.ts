// A request handler for `serve` (examples/serve.ts): it runs inside a sandbox, one per request.
export default {
  async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    return Response.json({ method: req.method, path: url.pathname, body: await req.text() });
  },
};

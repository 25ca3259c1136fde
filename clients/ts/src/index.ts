// The public API of the "bunker" package. index.d.ts declares each export (test/dts.test.ts).
export { BunkerError } from "./errors";
export { Connection, type EventListener, type RequestOptions, type SentRequest } from "./connection";
export { spawn, SandboxedSubprocess, type SpawnOptions, type StdinWriter, type StdinOption, type OutputOption } from "./spawn";
export { run, CommandError, type RunOptions, type RunOutput } from "./run";
export { effectivePolicy } from "./policy";
export type * from "./types";
export {
  evalJs,
  EvalError,
  EvalWorker,
  openEvalWorker,
  type EvalOptions,
  type EvalOutput,
  type WorkerEvalOptions,
} from "./eval";
export { serve, type ServeOptions, type HandlerFailure } from "./serve";
export { build, type BuildOptions, type BuildOutput, type BuildOutputFile } from "./build";
export { SandboxedWorker, type SandboxedWorkerOptions } from "./worker";

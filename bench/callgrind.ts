/**
 * Reading callgrind's per-function costs (`callgrind_annotate --inclusive=yes`) for the
 * instruction counts of `npm run bench -- --instructions` (instructions.ts): which of a window's
 * instructions were work no single response did.
 */

/** The optimizing compilers' background jobs (Turbofan, Maglev): their work is the JIT warming up, not serving. */
const COMPILER_JOBS = /OptimizingCompileTaskExecutor::CompileTask::Run|MaglevConcurrentDispatcher::JobTask::Run/;

/**
 * A full collection's work, wherever it runs: the main thread's final pause (`Heap::MarkCompact`)
 * and incremental steps (`IncrementalMarking::Step`, from its task or from allocation), the
 * helpers' marking and sweeping. None calls another (the helpers' jobs run on V8's worker threads
 * only: callgrind's caller tree of a run with full collections), so their inclusive costs add up
 * without counting anything twice. Scavenges are left in: each response's allocation pays for them.
 */
const FULL_COLLECTION_WORK = /v8::internal::(?:Heap::MarkCompact|IncrementalMarking::Step|ConcurrentMarking::JobTaskMajor::Run|Sweeper::MajorSweeperJob::Run)\(/;

/**
 * Of a callgrind dump's instructions, those that are not the responses' own, from
 * `callgrind_annotate --inclusive=yes`: the compilers' jobs and full collections. Only a function's
 * own line counts (`name(args) [/path/to/object]`), not a recursion cycle's (`name'2`) nor a cold
 * clone's, whose costs are inside it.
 */
export function apartFromServing(annotated: string): { compilers: number; fullCollections: number } {
  let compilers = 0;
  let fullCollections = 0;
  for (const line of annotated.split('\n')) {
    if (!/\) \[\//.test(line)) continue;
    const cost = Number(/^\s*([\d,]+)/.exec(line)?.[1].replaceAll(',', '') ?? 0);
    if (COMPILER_JOBS.test(line)) compilers += cost;
    else if (FULL_COLLECTION_WORK.test(line)) fullCollections += cost;
  }
  return { compilers, fullCollections };
}

/**
 * The functions a server process runs once per response, by protocol: a window's responses are
 * counted by the calls to it in the window's dump (instructions.ts), not by what the load tool
 * was asked for, since one load spans every window. HTTP/2: the native half of `stream.respond`;
 * HTTP/1.1: Node's parser completing a request (undici parses with its own WebAssembly llhttp, so
 * the origin side does not count).
 */
export const RESPONSE_MARKS = {
  h2: 'node::http2::Http2Stream::Respond(v8::FunctionCallbackInfo<v8::Value> const&)',
  h1: 'node::http_parser::Parser::Proxy<int (node::http_parser::Parser::*)(), &node::http_parser::Parser::on_message_complete>::Raw(llhttp__internal_s*)',
} as const;

/**
 * The calls to the function named `name` (exactly) in a callgrind dump: the sum of the `calls=`
 * lines under each `cfn=` that names it. Names are compressed (`fn=(7) name` once, `(7)` after),
 * and either kind of line may bring a name in.
 */
export function callsTo(dump: string, name: string): number {
  let id: string | undefined;
  let calls = 0;
  let counting = false;
  for (const line of dump.split('\n')) {
    const named = /^c?fn=\((\d+)\)(?: (.*))?$/.exec(line);
    if (named !== null) {
      if (named[2] === name) id = named[1];
      counting = line.startsWith('cfn=') && named[1] === id;
      continue;
    }
    if (counting && line.startsWith('calls=')) {
      calls += Number(line.slice(6).split(' ')[0]);
      counting = false;
    }
  }
  return calls;
}

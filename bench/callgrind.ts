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

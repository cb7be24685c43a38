import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RESPONSE_MARKS, apartFromServing, callsTo } from '../../bench/callgrind.ts';

// Lines as callgrind_annotate --inclusive=yes prints them (node's path shortened).
const NODE = '[/usr/bin/node]';
const annotated = [
  '4,484,461,995 (100.0%)  PROGRAM TOTALS',
  `612,815,501 (13.66%)  ???:Builtins_Call_ReceiverIsAny'2 ${NODE}`,
  `211,270,792 ( 4.71%)  ???:v8::internal::OptimizingCompileTaskExecutor::CompileTask::Run(v8::JobDelegate*) ${NODE}`,
  ` 44,171,382 ( 0.98%)  ???:v8::internal::maglev::MaglevConcurrentDispatcher::JobTask::Run(v8::JobDelegate*) ${NODE}`,
  `1,559,347,691 (34.77%)  ???:v8::internal::Heap::MarkCompact() ${NODE}`,
  `  9,000,000 ( 0.20%)  ???:v8::internal::Heap::MarkCompact()'2 ${NODE}`,
  `  1,000,000 ( 0.02%)  ???:v8::internal::Heap::MarkCompactEpilogue() ${NODE}`,
  `  5,000,000 ( 0.11%)  ???:v8::internal::IncrementalMarking::Step(v8::base::TimeDelta, unsigned long, v8::internal::StepOrigin) ${NODE}`,
  `    700,000 ( 0.02%)  ???:v8::internal::IncrementalMarking::Step(v8::base::TimeDelta, unsigned long, v8::internal::StepOrigin) [clone .cold] ${NODE}`,
  ` 35,961,941 ( 0.80%)  ???:v8::internal::ConcurrentMarking::JobTaskMajor::Run(v8::JobDelegate*) ${NODE}`,
  `  2,000,000 ( 0.04%)  ???:v8::internal::ConcurrentMarking::JobTaskMinor::Run(v8::JobDelegate*) ${NODE}`,
  ` 16,030,303 ( 0.36%)  ???:v8::internal::Sweeper::MajorSweeperJob::Run(v8::JobDelegate*) ${NODE}`,
  `  3,000,000 ( 0.07%)  ???:v8::internal::Sweeper::MinorSweeperJob::Run(v8::JobDelegate*) ${NODE}`,
  ` 27,353,407 ( 0.61%)  ???:v8::internal::ScavengerCollector::JobTask::Run(v8::JobDelegate*) ${NODE}`,
  `  8,060,540 ( 0.18%)  ???:v8::internal::Heap::Scavenge() ${NODE}`,
].join('\n');

test('the compilers\' jobs and full collections are counted apart from serving, each once; scavenges and minor work are not', () => {
  assert.deepEqual(apartFromServing(annotated), {
    compilers: 211_270_792 + 44_171_382,
    // MarkCompact, Step, the major marking and sweeping jobs: not the recursion cycle, the cold clone, the epilogue or anything minor.
    fullCollections: 1_559_347_691 + 5_000_000 + 35_961_941 + 16_030_303,
  });
});

test('a dump with neither has nothing apart', () => {
  assert.deepEqual(apartFromServing(`1,000 (100.0%)  PROGRAM TOTALS\n 900 (90.0%)  ???:main ${NODE}\n`), { compilers: 0, fullCollections: 0 });
});

test('a window\'s responses are the calls to the marked function, wherever its name was first given', () => {
  const dump = [
    'fn=(1) main',
    'cfn=(2) node::http2::Http2Stream::Respond(v8::FunctionCallbackInfo<v8::Value> const&)',
    'calls=3 0x10',
    '0x5 900',
    'fn=(3) other',
    'cfi=(4) /usr/bin/node',
    'cfn=(2)',
    'calls=2 0x10',
    '0x6 600',
    'cfn=(5) node::http2::Http2Stream::Respond(v8::FunctionCallbackInfo<v8::Value> const&) [clone .cold]',
    'calls=7 0x20',
    '0x7 70',
    'fn=(2)',
    '0x10 50',
    'cfn=(6) callee',
    'calls=11 0x30',
    '0x11 10',
  ].join('\n');
  // The cold clone is called from inside Respond: not a response of its own.
  assert.equal(callsTo(dump, RESPONSE_MARKS.h2), 5);
  assert.equal(callsTo(dump, RESPONSE_MARKS.h1), 0);
});

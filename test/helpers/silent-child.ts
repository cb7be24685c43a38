setInterval(() => {}, 1000); // an IPC child that never answers (test/cache/store-contract.test.ts)

/**
 * Imported first by the daemon's entry point. libuv sizes its thread pool (fs calls, zlib async,
 * DNS) when it is first used, from UV_THREADPOOL_SIZE. Its default of 4 is easily filled by chunk
 * cache writes during prefetch, and every other fs call (snapshot dirs in Prepare, mountinfo
 * reads) then queues behind them on a container's start-up path. 16 threads cost little memory.
 */
if (process.env.UV_THREADPOOL_SIZE === undefined) process.env.UV_THREADPOOL_SIZE = '16'
export {}

/**
 * Resources opened by a test (servers, sockets, clients) register how to release themselves here;
 * every test file runs `afterEach(cleanup)` so nothing outlives its test.
 */
type Task = () => unknown;

const tasks: Task[] = [];

/** Registers a release step; steps run in reverse order of registration. */
export function onCleanup(task: Task): void {
  tasks.push(task);
}

/** Releases everything registered so far (errors in one step do not stop the others). */
export async function cleanup(): Promise<void> {
  while (tasks.length > 0) {
    const task = tasks.pop()!;
    try {
      await task();
    } catch {
      // Already closed, or failing on the way out: nothing left to release.
    }
  }
}

/** Whether a process `pid` exists that this process may signal (signal 0; a zombie counts as alive). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

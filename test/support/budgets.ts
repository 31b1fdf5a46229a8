// Shared by the test harness, child servers of the fault tests and `npm run bench` (which loads
// from one address and a few accounts at rates no person sends).

/** Budgets high enough that no test meets them by accident (`limits.test.ts` sets its own). */
export const LIFTED_BUDGETS: Record<string, string> = {
  MUTATIONS_PER_USER_PER_10S: '1000000',
  READS_PER_USER_PER_10S: '1000000',
  SENDS_PER_USER_PER_10S: '1000000',
  SENDS_PER_USER_PER_HOUR: '100000000',
  SENDS_PER_ROOM_PER_10S: '1000000',
  SIGNUPS_PER_ADDRESS_PER_HOUR: '1000000',
  LOGIN_FAILURES_PER_ADDRESS_PER_15_MIN: '1000000',
  ROOMS_PER_ADDRESS_PER_HOUR: '1000000',
  WS_PER_ADDRESS: '1000000',
  WS_PER_USER: '100000',
  WS_OPERATIONS_PER_SOCKET_PER_S: '1000000',
};

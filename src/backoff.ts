/** The delay before retry number `failures` + 1: `initial`, doubled after each failure, at most `max`. */
export function backoffMs({ initial, max }: { initial: number; max: number }, failures: number): number {
  // The exponent is capped so that a long run of failures cannot overflow to Infinity.
  return Math.min(initial * 2 ** Math.min(failures, 20), max);
}

/** `value` if it is a positive integer; otherwise a RangeError naming `name` (an option, an argument). */
export function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * Numbers written on a command line (`updraft sim`, `updraft demo`, `npm run bench`), read
 * strictly: `Number()` alone takes '' as 0, '1e3' as 1000 and ' 5' as 5, so a slip would run
 * something other than what was asked. Each caller throws its own error, naming its option.
 */

/** A whole number from `min` to `max` written as digits only ('', '2.5', '1e3', '-1' and '0x10' are not), or undefined. */
export function wholeNumber(text: string, min: number, max: number): number | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
}

/** A probability from 0 to 1 written as a decimal number ('0.05', '.5', '1e-3'; not '' nor '5%'), or undefined. */
export function probability(text: string): number | undefined {
  if (!/^\+?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 0 && n <= 1 ? n : undefined;
}

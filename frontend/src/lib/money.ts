// Money arrives from the API as Decimal strings ("0.000123", "12.5"). It is added and formatted with BigInt
// fixed-point arithmetic, never as a float: 0.1 + 0.2 must print $0.30, and a micro-dollar must not vanish.

const SCALE = 12; // digits after the point we keep exactly; prices are numeric(12,6), costs have at most 12

const DECIMAL_RE = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/** A Decimal string as an integer count of 10^-SCALE units. Throws on anything that isn't a plain decimal. */
export function toUnits(value: string): bigint {
  const match = DECIMAL_RE.exec(value.trim());
  if (!match || (match[2] === "" && (match[3] ?? "") === "")) throw new Error(`not a decimal: ${JSON.stringify(value)}`);
  const [, sign, whole = "", fraction = ""] = match;
  const digits = (fraction + "0".repeat(SCALE)).slice(0, SCALE);
  // Digits beyond SCALE are dropped (truncated); the API never sends more than 12.
  const units = BigInt(whole || "0") * 10n ** BigInt(SCALE) + BigInt(digits || "0");
  return sign === "-" ? -units : units;
}

export function fromUnits(units: bigint): string {
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const base = 10n ** BigInt(SCALE);
  const whole = (abs / base).toString();
  const fraction = (abs % base).toString().padStart(SCALE, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

export function addDecimal(...values: string[]): string {
  return fromUnits(values.reduce((sum, v) => sum + toUnits(v), 0n));
}

export function compareDecimal(a: string, b: string): number {
  const d = toUnits(a) - toUnits(b);
  return d === 0n ? 0 : d < 0n ? -1 : 1;
}

/** `part / whole` in thousandths (0..1000), for bar heights; 0 when whole is 0. */
export function ratioPerMille(part: string, whole: string): number {
  const w = toUnits(whole);
  if (w <= 0n) return 0;
  return Number((toUnits(part) * 1000n) / w);
}

function roundUnits(units: bigint, digits: number): bigint {
  // Round half away from zero to `digits` decimals, still in 10^-SCALE units.
  const step = 10n ** BigInt(SCALE - digits);
  const abs = units < 0n ? -units : units;
  const rounded = ((abs + step / 2n) / step) * step;
  return units < 0n ? -rounded : rounded;
}

function groupThousands(whole: string): string {
  return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * "$1,234.50" for amounts of a cent or more; small amounts keep up to `maxDigits` significant decimals so a
 * single request's cost ("0.0000123") still reads as something: "$0.0000123". Zero is "$0.00".
 */
export function formatUsd(value: string, maxDigits = 6): string {
  const units = toUnits(value);
  if (units === 0n) return "$0.00";
  const abs = units < 0n ? -units : units;
  const cent = 10n ** BigInt(SCALE - 2);
  let digits = 2;
  if (abs < cent) {
    // Enough decimals to show `maxDigits - 4` significant digits (at least one), capped at SCALE.
    const fraction = abs.toString().padStart(SCALE, "0");
    const firstNonZero = fraction.search(/[1-9]/);
    digits = Math.min(SCALE, Math.max(2, firstNonZero + 1 + Math.max(0, maxDigits - 4)));
  }
  const rounded = roundUnits(units, digits);
  const text = fromUnits(rounded < 0n ? -rounded : rounded);
  const [whole = "0", fraction = ""] = text.split(".");
  const shown = digits <= 2 ? fraction.padEnd(2, "0") : fraction.padEnd(2, "0").replace(/(\d{2,}?)0+$/, "$1");
  return `${units < 0n ? "-" : ""}$${groupThousands(whole)}.${shown}`;
}

/** Prices are USD per million tokens: "$0.10 / 1M". */
export function formatPerMillion(value: string): string {
  return `${formatUsd(value)} / 1M`;
}

export function formatTokens(n: number): string {
  return n.toLocaleString("en-US");
}

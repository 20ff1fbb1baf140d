import { describe, expect, it } from "vitest";

import { addDecimal, compareDecimal, formatUsd, fromUnits, ratioPerMille, toUnits } from "./money";

describe("Decimal strings", () => {
  it("adds without float error", () => {
    expect(addDecimal("0.1", "0.2")).toBe("0.3");
    expect(addDecimal("0.000000000001", "0.999999999999")).toBe("1");
    expect(addDecimal("12345678901234567.5", "0.5")).toBe("12345678901234568");
    expect(addDecimal()).toBe("0");
  });

  it("round-trips and rejects junk", () => {
    expect(fromUnits(toUnits("-3.140"))).toBe("-3.14");
    expect(fromUnits(toUnits(".5"))).toBe("0.5");
    expect(() => toUnits("1e-7")).toThrow();
    expect(() => toUnits("")).toThrow();
    expect(() => toUnits("abc")).toThrow();
  });

  it("compares and divides", () => {
    expect(compareDecimal("0.30", "0.3")).toBe(0);
    expect(compareDecimal("0.29", "0.3")).toBe(-1);
    expect(ratioPerMille("1", "3")).toBe(333);
    expect(ratioPerMille("1", "0")).toBe(0);
  });
});

describe("formatUsd", () => {
  it("formats cents with grouping", () => {
    expect(formatUsd("0")).toBe("$0.00");
    expect(formatUsd("0.000")).toBe("$0.00");
    expect(formatUsd("1234567.5")).toBe("$1,234,567.50");
    expect(formatUsd("100")).toBe("$100.00");
    expect(formatUsd("0.105")).toBe("$0.11"); // half away from zero, on the decimal digits, not a binary float
    expect(formatUsd("1.005")).toBe("$1.01"); // (1.005).toFixed(2) === "1.00"
    expect(formatUsd("-2.5")).toBe("-$2.50");
  });

  it("keeps small amounts visible", () => {
    expect(formatUsd("0.0000123")).toBe("$0.0000123");
    expect(formatUsd("0.000012345")).toBe("$0.0000123");
    expect(formatUsd("0.000000000001")).toBe("$0.000000000001");
    expect(formatUsd("0.005")).toBe("$0.005");
    expect(formatUsd("0.0050")).toBe("$0.005");
  });
});

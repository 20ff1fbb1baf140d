import { describe, expect, it } from "vitest";

import { initialUpload, isBusy, pickAdapterFiles, type UploadEvent, uploadPercent, uploadReducer } from "./upload";

const run = (events: UploadEvent[]) => events.reduce(uploadReducer, initialUpload);

describe("upload state machine", () => {
  it("goes idle -> uploading -> validating -> ready", () => {
    let s = run([{ type: "start", total: 1000 }, { type: "progress", loaded: 250, total: 1000 }]);
    expect(s).toEqual({ phase: "uploading", loaded: 250, total: 1000 });
    expect(uploadPercent(s)).toBe(25);
    s = uploadReducer(s, { type: "accepted", uid: "u1", status: "pending" });
    expect(s).toEqual({ phase: "validating", uid: "u1", status: "pending" });
    expect(isBusy(s)).toBe(true);
    s = uploadReducer(s, { type: "polled", status: "validating" });
    s = uploadReducer(s, { type: "polled", status: "ready" });
    expect(s).toEqual({ phase: "ready", uid: "u1" });
    expect(isBusy(s)).toBe(false);
  });

  it("shows the failure reason, with a fallback", () => {
    const base: UploadEvent[] = [{ type: "start", total: 1 }, { type: "accepted", uid: "u", status: "pending" }];
    expect(run([...base, { type: "polled", status: "failed", failureReason: "rank 128 > 64" }])).toEqual({
      phase: "failed", uid: "u", reason: "rank 128 > 64",
    });
    expect(run([...base, { type: "polled", status: "failed", failureReason: null }])).toMatchObject({
      reason: "Validation failed.",
    });
  });

  it("keeps progress monotonic and bounded; ignores events out of phase", () => {
    const s = run([
      { type: "start", total: 100 },
      { type: "progress", loaded: 60, total: 100 },
      { type: "progress", loaded: 40, total: 100 },
      { type: "progress", loaded: 500, total: 100 },
    ]);
    expect(s).toEqual({ phase: "uploading", loaded: 100, total: 100 });
    expect(run([{ type: "polled", status: "ready" }])).toEqual(initialUpload);
    expect(run([{ type: "progress", loaded: 1, total: 2 }])).toEqual(initialUpload);
    // a second start while one is in flight is ignored
    expect(uploadReducer(s, { type: "start", total: 5 })).toBe(s);
  });

  it("turns a 400 into field errors, and can start again", () => {
    let s = run([
      { type: "start", total: 10 },
      { type: "rejected", message: "Bad upload", fieldErrors: { name: ["Adapter names are 1–64 characters"] } },
    ]);
    expect(s).toMatchObject({ phase: "error", fieldErrors: { name: ["Adapter names are 1–64 characters"] } });
    s = uploadReducer(s, { type: "start", total: 3 });
    expect(s.phase).toBe("uploading");
  });

  it("an accepted upload that is already ready or failed settles at once", () => {
    expect(run([{ type: "start", total: 1 }, { type: "accepted", uid: "u", status: "ready" }])).toEqual({
      phase: "ready", uid: "u",
    });
  });
});

describe("pickAdapterFiles", () => {
  const f = (name: string) => new File(["x"], name);
  it("takes the two files of a folder and drops the README", () => {
    const r = pickAdapterFiles([f("README.md"), f("adapter_config.json"), f("adapter_model.safetensors")]);
    expect("files" in r && r.files.map((x) => x.name)).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
  });
  it("takes one archive", () => {
    expect("files" in pickAdapterFiles([f("a.tar.gz")])).toBe(true);
  });
  it("refuses mixtures and missing files", () => {
    expect("error" in pickAdapterFiles([f("a.zip"), f("adapter_config.json")])).toBe(true);
    expect("error" in pickAdapterFiles([f("adapter_config.json")])).toBe(true);
    expect("error" in pickAdapterFiles([f("adapter_model.bin"), f("adapter_config.json")])).toBe(true);
  });
});

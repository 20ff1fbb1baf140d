"""Grammar specs -> xgrammar CompiledGrammar for this model's vocabulary, cached by a hash of the spec.

Compiling runs on a small executor of its own, never on the engine's stepping thread or the event loop: the request
awaits its grammar before it is handed to the engine. A spec is bounded in size before it is compiled and in time
while it compiles (xgrammar can't be interrupted, so a compile past the limit fails the request and is left to
finish in the background; the cache keeps its result for the next caller).
"""

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import xgrammar as xgr

from workers.engine.sampling_params import InvalidRequestError

GrammarKind = Literal["json_schema", "json_object", "ebnf", "structural_tag"]

MAX_SOURCE_BYTES = 64 << 10  # a schema, grammar or tool list larger than this is refused before compiling
COMPILE_TIMEOUT_S = 10.0
MAX_CACHED = 512  # compiled grammars kept (SmolLM2: ~36 KB for a small schema, a few MB for a large one)


class GrammarError(InvalidRequestError):
    """A schema, grammar or tool definition that can't be compiled: a 400 naming `response_format` or `tools`."""


class VocabSource(Protocol):
    """What building xgrammar's TokenizerInfo needs from workers.tokenizer.Tokenizer."""

    @property
    def vocab_size(self) -> int: ...

    def id_to_token(self, token_id: int) -> str | None: ...

    def backend_json(self) -> str: ...


@dataclass(frozen=True, slots=True)
class GrammarSpec:
    """One grammar to compile. `source` is canonical JSON for schemas and tags, the text itself for EBNF."""

    kind: GrammarKind
    source: str
    param: str = "response_format"  # what an error names
    strict: bool = True  # json_schema: no properties or items beyond the schema's (OpenAI's strict)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{int(self.strict)}\0{self.source}".encode()).hexdigest()


@dataclass(slots=True)
class CompileStats:
    num_compiled: int = 0
    num_cache_hits: int = 0
    compile_seconds: list[float] = field(default_factory=list)  # one per cold compile, most recent last


def tokenizer_info(tokenizer: VocabSource, vocab_size: int, stop_token_ids: list[int]) -> xgr.TokenizerInfo:
    """xgrammar's view of the vocabulary. `vocab_size` is the model's (the logits' width), which may exceed the
    tokenizer's when the embedding is padded; the padded ids are never allowed."""
    encoded = [tokenizer.id_to_token(i) or "" for i in range(min(tokenizer.vocab_size, vocab_size))]
    meta = xgr.TokenizerInfo._detect_metadata_from_hf(tokenizer.backend_json())  # the decoder's byte encoding
    return xgr.TokenizerInfo(
        encoded, meta["vocab_type"], vocab_size=vocab_size, stop_token_ids=stop_token_ids or None,
        add_prefix_space=meta["add_prefix_space"],
    )


class GrammarCompiler:
    def __init__(
        self,
        tokenizer: VocabSource,
        vocab_size: int,
        stop_token_ids: list[int],
        *,
        max_cached: int = MAX_CACHED,
        timeout_s: float = COMPILE_TIMEOUT_S,
        max_source_bytes: int = MAX_SOURCE_BYTES,
        threads: int = 2,
    ) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._stop_token_ids = list(stop_token_ids)
        self.max_cached = max_cached
        self.timeout_s = timeout_s
        self.max_source_bytes = max_source_bytes
        self._threads = threads
        self._xgr: xgr.GrammarCompiler | None = None  # built on first use (~0.25 s for a 49k vocabulary)
        self._cache: OrderedDict[str, xgr.CompiledGrammar] = OrderedDict()
        self._in_flight: dict[str, Future[xgr.CompiledGrammar]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hearth-grammar")
        self.stats = CompileStats()

    def compile(self, spec: GrammarSpec) -> xgr.CompiledGrammar:
        """Blocking: the cached grammar, or compile it here (tests, benchmarks, the executor's threads)."""
        return self._submit(spec).result()

    async def compile_async(self, spec: GrammarSpec) -> xgr.CompiledGrammar:
        """The request path: waits on the executor (never the event loop) within the compile-time limit."""
        future = self._submit(spec)
        try:
            # shielded: a request that gives up must not cancel a compile other requests (and the cache) wait on
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s)
        except TimeoutError:
            raise GrammarError(
                f"The {spec.param} grammar took longer than {self.timeout_s:.0f} s to compile; simplify it.",
                param=spec.param, code="grammar_too_complex",
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _submit(self, spec: GrammarSpec) -> Future[xgr.CompiledGrammar]:
        if len(spec.source.encode()) > self.max_source_bytes:
            raise GrammarError(
                f"The {spec.param} grammar is larger than {self.max_source_bytes >> 10} KiB.",
                param=spec.param, code="grammar_too_large",
            )
        key = spec.key
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.stats.num_cache_hits += 1
                done: Future[xgr.CompiledGrammar] = Future()
                done.set_result(hit)
                return done
            future = self._in_flight.get(key)  # the same schema from concurrent requests compiles once
            if future is None or future.cancelled():
                future = self._executor.submit(self._compile, spec)
                self._in_flight[key] = future
            return future

    def _compile(self, spec: GrammarSpec) -> xgr.CompiledGrammar:
        try:
            t0 = time.perf_counter()
            compiled = self._compile_uncached(spec)
            elapsed = time.perf_counter() - t0
        except Exception:
            with self._lock:
                self._in_flight.pop(spec.key, None)
            raise
        with self._lock:
            self._in_flight.pop(spec.key, None)
            self._cache[spec.key] = compiled
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
            self.stats.num_compiled += 1
            self.stats.compile_seconds.append(elapsed)
            del self.stats.compile_seconds[:-1000]
        return compiled

    def _compiler(self) -> xgr.GrammarCompiler:
        with self._lock:
            if self._xgr is None:
                info = tokenizer_info(self._tokenizer, self._vocab_size, self._stop_token_ids)
                self._xgr = xgr.GrammarCompiler(info, max_threads=self._threads, cache_enabled=False)
            return self._xgr

    def _compile_uncached(self, spec: GrammarSpec) -> xgr.CompiledGrammar:
        compiler = self._compiler()
        try:
            if spec.kind == "json_object":
                return compiler.compile_json_schema('{"type": "object"}', any_whitespace=False, strict_mode=False)
            if spec.kind == "json_schema":
                # One line, ", " and ": ": a small model given free whitespace can loop on newlines until max_tokens.
                return compiler.compile_json_schema(spec.source, any_whitespace=False, strict_mode=spec.strict)
            if spec.kind == "ebnf":
                return compiler.compile_grammar(spec.source)
            return compiler.compile_structural_tag(spec.source)
        except (RuntimeError, ValueError, TypeError) as exc:  # xgrammar raises RuntimeError for bad input
            raise GrammarError(
                f"Invalid {spec.param}: {_first_line(exc)}", param=spec.param, code="invalid_grammar"
            ) from None


def _first_line(exc: BaseException) -> str:
    # xgrammar's messages start with a "[time] file.cc:line: Check failed: ..." prefix; keep what follows it.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for marker in ("is false: ", "error at ", ".cc:"):
        if marker in text:
            text = text.split(marker, 1)[1] if marker != ".cc:" else text.split(": ", 1)[-1]
            break
    return text[:300]

"""Continuous batching with chunked prefill under a per-step token budget, and preemption by recompute."""

from collections import deque
from dataclasses import dataclass

from workers.engine.block_manager import BlockManager
from workers.engine.config import EngineConfig
from workers.engine.outputs import SamplerOutput
from workers.engine.sequence import Sequence, SequenceStatus


@dataclass(slots=True)
class ScheduledBatch:
    seqs: list[Sequence]
    num_new_tokens: list[int]  # query tokens of each sequence this step (prefill chunk, or 1 decode token + its draft)
    samples: list[bool]  # whether each sequence reaches its last token this step and so samples a new one
    is_prefill: bool  # any sequence with more than one query token
    pinned_adapters: frozenset[str] = frozenset()  # adapters of all running sequences: their LoRA slots stay put

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)


class Scheduler:
    def __init__(self, config: EngineConfig, num_kv_blocks: int, eos_token_ids: list[int]) -> None:
        self.max_num_seqs = config.max_num_seqs
        self.max_num_batched_tokens = config.max_num_batched_tokens
        self.max_loras = config.max_loras
        self.ngram_max_batch = config.ngram_max_batch
        self.block_manager = BlockManager(num_kv_blocks, config.block_size, config.enable_prefix_caching)
        self.eos_token_ids = frozenset(eos_token_ids)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # admission order: the last is the newest, preempted first
        self.forks: dict[int, list[Sequence]] = {}  # leader seq_id -> choices 1..n-1 waiting for its prefill
        self.num_preemptions = 0

    def add(self, seqs: list[Sequence]) -> None:
        leader, rest = seqs[0], seqs[1:]
        self.waiting.append(leader)
        if rest:
            for seq in rest:
                seq.leader = leader
            self.forks[leader.seq_id] = rest

    @property
    def num_waiting(self) -> int:
        return len(self.waiting) + sum(len(v) for v in self.forks.values())

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running or self.forks)

    def schedule(self) -> ScheduledBatch | None:
        budget = self.max_num_batched_tokens
        seqs: list[Sequence] = []
        num_new: list[int] = []
        preempted = False
        # Running first: decodes (1 token each), then continuing prefill chunks, so a long prompt never stalls them.
        order = [s for s in self.running if not s.is_prefilling] + [s for s in self.running if s.is_prefilling]
        lookup = sum(not s.is_prefilling for s in self.running) <= self.ngram_max_batch
        for seq in order:
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:
                continue  # preempted earlier in this loop
            n = min(seq.num_tokens - seq.num_computed_tokens, budget)
            if seq.spec is not None and not seq.is_prefilling:
                n += len(self._draft(seq, budget - n, lookup))
            while not self.block_manager.can_append(seq, n):
                if seq.spec is not None and seq.draft_token_ids:  # a draft is optional: drop it before preempting
                    seq.spec.drop()
                    n = 1
                    continue
                victim = self.running[-1]
                self._preempt(victim)
                preempted = True
                if victim in seqs:  # already scheduled this step (a decode newer than this prefill): unschedule it
                    i = seqs.index(victim)
                    budget += num_new[i]
                    del seqs[i], num_new[i]
                if victim is seq:
                    break
            if seq.status is SequenceStatus.RUNNING:
                self.block_manager.may_append(seq, n)
                seqs.append(seq)
                num_new.append(n)
                budget -= n
        # Then admit waiting sequences, unless memory just ran short (they would only be preempted again).
        if not preempted:
            self._admit(seqs, num_new, budget)
        if not seqs:
            return None
        samples = [s.num_computed_tokens + n - len(s.draft_token_ids) == s.num_tokens
                   for s, n in zip(seqs, num_new, strict=True)]  # fmt: skip
        pinned = frozenset(s.adapter_id for s in self.running if s.adapter_id is not None)
        return ScheduledBatch(seqs, num_new, samples, any(n > 1 for n in num_new), pinned)

    def _admit(self, seqs: list[Sequence], num_new: list[int], budget: int) -> None:
        bm = self.block_manager
        adapters = {s.adapter_id for s in self.running if s.adapter_id is not None}
        # Blocks this step's prefill chunks will fill: a request that would compute one of them again waits a step
        # and then hits it (64 requests behind one 400-token system prompt otherwise all start on it at once).
        in_flight = {h for s, n in zip(seqs, num_new, strict=True) if s.is_prefilling for h in bm.hashes_completed(s, n)}
        for seq in list(self.waiting):
            if budget == 0 or len(self.running) >= self.max_num_seqs:
                return
            if seq.adapter_id is not None and seq.adapter_id not in adapters and len(adapters) >= self.max_loras:
                continue  # at most max_loras distinct adapters a step; later requests with resident ones go ahead
            hits = bm.lookup(seq)
            if in_flight and bm.next_block_hash(seq, hits) in in_flight:
                continue
            n = min(seq.num_tokens - len(hits) * bm.block_size, budget)
            if not bm.can_allocate(seq, hits, n):
                return  # first come, first served for memory
            bm.allocate(seq, hits, n)
            if bm.enable_prefix_caching:
                in_flight.update(bm.hashes_completed(seq, n))
            if seq.num_cached_tokens < 0:  # first admission: what the request is billed as cached
                seq.num_cached_tokens = min(seq.num_computed_tokens, seq.num_prompt_tokens)
            self.waiting.remove(seq)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            if seq.adapter_id is not None:
                adapters.add(seq.adapter_id)
            seqs.append(seq)
            num_new.append(n)
            budget -= n

    def _draft(self, seq: Sequence, room: int, lookup: bool) -> list[int]:
        # at most `room` more tokens this step, and never past max_tokens: the step emits up to len(draft) + 1
        assert seq.spec is not None
        limit = min(room, seq.max_tokens - seq.num_output_tokens - 1)
        return seq.spec.propose(seq.token_ids, seq.num_prompt_tokens, limit, lookup)

    def _preempt(self, seq: Sequence) -> None:
        # Recompute, not swap: drop the KV and start over from the tokens (prompt + output so far), which yields
        # the same continuation. Front of the queue, so it comes back first.
        self.running.remove(seq)
        self.block_manager.deallocate(seq)
        if seq.spec is not None:
            seq.spec.drop()
        if seq.grammar is not None:  # recompute keeps every output token, so this is a no-op unless tokens were lost
            seq.grammar.sync(seq.num_output_tokens)
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def postprocess(self, batch: ScheduledBatch, output: SamplerOutput) -> list[Sequence]:
        """Advance the batch by the step's results; returns the sequences that got new tokens (maybe finishing)."""
        out: list[Sequence] = []
        j = 0
        for seq, n, samples in zip(batch.seqs, batch.num_new_tokens, batch.samples, strict=True):
            prev = seq.num_computed_tokens
            if not samples:
                seq.num_computed_tokens += n
                self.block_manager.commit(seq, prev)
                continue
            draft = seq.draft_token_ids
            kept = output.num_accepted[j] if output.num_accepted is not None else 0
            tokens = draft[:kept] + [output.token_ids[j]]
            if output.logprobs is not None and seq.output_logprobs is not None:
                lp = output.logprobs[j]
                if lp is not None:
                    seq.output_logprobs.append(lp)
            j += 1
            reason, appended = None, 0
            for token in tokens:
                seq.token_ids.append(token)
                appended += 1
                if seq.num_output_tokens == 1 and seq.seq_id in self.forks:
                    self._fork(seq)
                reason = self._finish_reason(seq, token)
                if reason is not None:
                    break  # kept draft tokens after a stop are dropped, as plain decoding never makes them
            seq.num_step_tokens = appended
            # KV is valid for the old last token and the kept draft tokens; the rejected ones' slots are rewritten
            # later (they lie past num_computed_tokens), and commit only publishes blocks below it.
            seq.num_computed_tokens = min(prev + n, seq.num_tokens - 1)
            self.block_manager.commit(seq, prev)
            if seq.spec is not None and draft:
                seq.spec.observe(min(kept, appended))
                if reason is None:
                    self.block_manager.trim(seq)
            elif seq.spec is not None:
                seq.spec.drop()
            if reason is not None:
                self.finish(seq, reason)
            out.append(seq)
        return out

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        # A grammar ends the output once complete (its mask then allows only a stop token), ignore_eos or not;
        # a token it refuses (only possible if the mask was bypassed) ends it too rather than run off the grammar.
        grammar_done = seq.grammar is not None and (not seq.grammar.accept(token) or seq.grammar.is_terminated)
        if (grammar_done or token in seq.params.stop_token_ids
                or (token in self.eos_token_ids and not seq.params.ignore_eos)):
            return "stop"
        if seq.num_output_tokens >= seq.max_tokens:
            return "length"
        return None

    def _fork(self, leader: Sequence) -> None:
        for child in self.forks.pop(leader.seq_id):
            self.block_manager.fork(leader, child)
            child.num_cached_tokens = leader.num_cached_tokens  # the prompt is processed (and billed) once
            child.leader = None
            child.status = SequenceStatus.RUNNING
            self.running.append(child)

    def finish(self, seq: Sequence, reason: str) -> None:
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            if seq in self.waiting:
                self.waiting.remove(seq)
            elif seq.leader is not None:  # a choice not yet forked from its leader
                siblings = self.forks.get(seq.leader.seq_id, [])
                if seq in siblings:
                    siblings.remove(seq)
                if not siblings:
                    self.forks.pop(seq.leader.seq_id, None)
        if seq.block_table:
            self.block_manager.deallocate(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
        # A leader that ends before its prefill completes (abort) hands its choices to the queue themselves.
        orphans = self.forks.pop(seq.seq_id, [])
        for child in orphans:
            child.leader = None
            self.waiting.append(child)

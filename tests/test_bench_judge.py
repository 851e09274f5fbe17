"""bench.bench_judge's replay: what a policy would have made of recorded verdicts (no server; the recording itself
runs in tests/test_bench.py)."""

from __future__ import annotations

import pytest

from bench.bench_judge import Record, lag_of, policy, replay

LAG_S = 0.05  # the VAD's lag behind the audio, as the utterance's end at max_silence (2 s) shows


def paused(pause_ms: int, *verdicts: tuple[float, float | None, float | None], text: str = "x") -> Record:
    """A 3 s utterance with a pause inserted at 1.0 s (1.5 s into its speech); verdicts are given in s into the
    pause."""
    seconds = 3.0 + pause_ms / 1000
    start = 1.0 - seconds
    return Record(text, "paused", pause_ms, 1.0, seconds, False,
                  [(start + at, audio, words) for at, audio, words in verdicts], 2.0 + LAG_S, "max_silence")


def complete(*verdict: float | None, at: float = 0.4, fresh: bool = False) -> Record:
    audio, words = verdict
    return Record("y", "complete", 0, 0.0, 2.0, fresh, [(at, audio, words)], 2.0 + LAG_S, "max_silence")


def test_a_sure_verdict_cuts_any_pause_it_arrives_in() -> None:
    # A verdict that arrives after the client resumed speaking was sent while the server still heard silence: it
    # ends the turn all the same. One that came too late was dropped by the server: no policy cuts that pause.
    records = [paused(400, (0.35, 0.95, 0.8)), paused(400, (0.45, 0.95, 0.8), text="late"), paused(400, text="none")]
    assert [r.text for r in replay(policy(), records).cut] == ["x", "late"]


def test_a_probable_end_cuts_only_pauses_longer_than_the_confirming_silence() -> None:
    # Judged finished, not surely (words 0.3): the turn ends 700 ms (+ the lag) into the pause.
    verdict = (0.4, 0.95, 0.3)
    assert replay(policy(), [paused(1000, verdict)]).cut
    assert not replay(policy(), [paused(600, verdict)]).cut
    assert not replay(policy(confirm_silence_ms=1100), [paused(1000, verdict)]).cut


def test_words_read_as_unfinished_hold_until_the_doubt_or_max_silence() -> None:
    doubted, unlikely = (0.4, 0.95, 0.001), (0.4, 0.95, 1e-7)
    assert not replay(policy(), [paused(1200, doubted), paused(1200, unlikely)]).cut
    ends = replay(policy(), [complete(0.95, 0.001), complete(0.95, 1e-7)]).complete_ends
    assert ends == pytest.approx([1.5 + LAG_S, 2.0 + LAG_S])


def test_complete_turns_end_when_the_verdict_and_the_silence_allow() -> None:
    result = replay(policy(), [complete(0.95, 0.8, at=0.45), complete(0.95, 0.3), complete(0.95, 0.8, fresh=True)])
    assert result.complete_ends == pytest.approx([0.45, 0.7 + LAG_S])
    assert result.fresh_ends == [0.4]
    assert result.held(result.complete_ends) == 0
    unsure = replay(policy(), [complete(0.2, 0.3)]).complete_ends
    assert unsure == pytest.approx([2.0 + LAG_S])  # both judges unsure: max_silence


def test_a_short_natural_pause_is_cut_only_by_an_end_at_once() -> None:
    # A verdict before the end of speech outside the inserted pause: a pause of the speech itself (≤ 250 ms).
    natural = Record("z", "complete", 0, 0.0, 2.0, False, [(-1.0, 0.95, 0.8), (0.4, 0.95, 0.8)], 2.05, "max_silence")
    assert replay(policy(), [natural]).cut
    hesitant = Record("z", "complete", 0, 0.0, 2.0, False, [(-1.0, 0.95, 0.3), (0.4, 0.95, 0.8)], 2.05,
                      "max_silence")
    assert not replay(policy(), [hesitant]).cut


def test_the_lag_is_each_utterance_own_or_the_median() -> None:
    records = [complete(0.9, 0.8), Record("w", "complete", 0, 0.0, 2.0, False, [], 0.9, "end_of_turn")]
    lags = lag_of(records, 2.0)
    assert [round(lag, 3) for lag in lags.values()] == [LAG_S, LAG_S]

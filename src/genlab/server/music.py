"""POST /v1/music/generations: music runs (genlab's own), continuing a MIDI primer or starting afresh: MIDI, WAV
and piano roll in base64; streamed, the notes as they are written, then the finished pieces."""

from __future__ import annotations

import base64
import tempfile
import time
import uuid
from pathlib import Path

from fastapi import Request

from genlab.media.audio import write_music
from genlab.core.errors import GenlabError
from genlab.server import sse
from genlab.server.registry import Endpoint, Served
from genlab.server.schemas import APIError, MusicRequest, parse
from genlab.tasks.music import seconds_of


class Music(Endpoint):
    async def create(self, request: Request, body: dict):
        body = parse(MusicRequest, body)
        s = self.registry.lookup(body.model, ("music",))
        primer = None
        if body.primer:
            try:
                primer = base64.b64decode(body.primer, validate=True)
            except ValueError:
                raise APIError(400, "primer: not base64", "primer", "invalid_value") from None
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:3], "big")
        if not body.stream:
            return {"created": int(time.time()), "data": await s.run(request, compose, s, body, primer, seed)}

        def work(emit):
            pieces = compose(s, body, primer, seed, on_notes=lambda i, notes: emit({"type": "music.notes", "index": i, "notes": notes}))
            for i, piece in enumerate(pieces):
                emit({"type": "music.completed", "index": i, **piece})

        produced = s.streaming(work)

        async def events():
            async for item in produced:
                yield sse.event(item if isinstance(item, dict) else sse.failure(item, s.name))
            yield sse.DONE

        return sse.response(events())


def compose(s: Served, body, primer: bytes | None, seed: int, on_notes=None) -> list[dict]:
    """A music request's pieces (MIDI, WAV, piano roll), on the model's own thread."""
    with tempfile.TemporaryDirectory(prefix="genlab-serve-") as tmp:
        prime = None
        if primer is not None:
            prime = Path(tmp) / "primer.mid"  # our own file: nothing in a request is used as a path
            prime.write_bytes(primer)
        try:
            samples = s.generator.generate(prime, n=body.n, seed=seed, seconds=body.seconds, temperature=body.temperature,
                                           top_k=body.top_k, top_p=body.top_p, on_notes=on_notes)
        except GenlabError as e:
            raise APIError(400, "primer: " + str(e).split(": ", 1)[-1], "primer", "invalid_value") from None
        return [music_files(x.score, Path(tmp) / f"out{i}.mid", s.generator.prime_seconds(prime)) for i, x in enumerate(samples)]


def music_files(score, midi: Path, prime_seconds: float | None) -> dict:
    paths, renderer = write_music(score, midi, prime_seconds)
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    return {"midi_b64": b64(paths[0]), "piano_roll_png_b64": b64(paths[1]), "wav_b64": b64(paths[2]),
            "seconds": round(seconds_of(score), 3), "notes": score.note_num(), "audio_renderer": renderer}

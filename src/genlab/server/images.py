"""POST /v1/images/generations: image runs, as base64 PNGs; streamed, a diffusion model's partial images as
it denoises, then the finished ones."""

from __future__ import annotations

import base64
import io
import re
import time
import uuid

from fastapi import Request

from genlab.core.samples import ImageSample
from genlab.server import sse
from genlab.server.registry import Endpoint, Served
from genlab.server.schemas import APIError, ImageRequest, parse

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class Images(Endpoint):
    async def create(self, request: Request, body: dict):
        body = parse(ImageRequest, body)
        s = self.registry.lookup(body.model, ("image",))
        gen = s.generator
        w, h = gen.size
        if body.size is not None and body.size != f"{w}x{h}":
            raise APIError(400, f"size: this model makes {w}x{h} images, not {body.size}", "size", "invalid_size")
        label = class_of(body.prompt, gen.classes) if gen.classes else None
        prompt = body.prompt if gen.text_conditioned else None  # a text-to-image run draws the prompt itself
        seed = body.seed if body.seed is not None else int.from_bytes(uuid.uuid4().bytes[:3], "big")
        if body.stream:
            return sse.response(self.events(s, body, seed, label, prompt))
        samples = await s.run(request, lambda: gen.generate(body.n, seed, label, body.steps, prompt=prompt))
        data = [{"b64_json": base64.b64encode(png_of(x.image())).decode(), "revised_prompt": None} for x in samples]
        return {"created": int(time.time()), "data": data}

    def events(self, s: Served, body, seed: int, label: int | None, prompt: str | None):
        """A partial-image event per image at about `partial_images` points of the denoising, then a completed
        event per image, then [DONE]."""
        created = int(time.time())

        def work(emit):
            frames = s.generator.trajectory(body.n, seed, label, body.steps, frames=body.partial_images + 1, prompt=prompt)
            for k, (step, total, images) in enumerate(frames):
                kind = "image_generation.completed" if step == total else "image_generation.partial_image"
                for i, image in enumerate(images):
                    png = png_of(ImageSample(image, seed, label).image())
                    event = {"type": kind, "created_at": created, "image_index": i, "b64_json": base64.b64encode(png).decode(),
                             "genlab_step": step, "genlab_steps": total}
                    if step != total:
                        event["partial_image_index"] = k
                    emit(sse.event(event, kind))

        produced = s.streaming(work)

        async def events():
            async for item in produced:
                yield item if isinstance(item, str) else sse.event(sse.failure(item, s.name))
            yield sse.DONE

        return events()


def class_of(prompt: str, classes: list[str]) -> int | None:
    """The class a prompt names: a class name or its number ("7", "a seven", "digit 7"); None when it names none
    (a class-conditional model then cycles through its classes)."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    for i, name in enumerate(classes):
        names = {name.lower(), str(i)} | ({NUMBER_WORDS[int(name)]} if name.isdigit() and int(name) < 10 else set())
        if names & set(words):
            return i
    return None


def png_of(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()

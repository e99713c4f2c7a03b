"""A question-answering API over passages, the shape of the pdf-qa-api: FastAPI and uvicorn, CPU torch to rank
the passages, psycopg2 to log each question in PostgreSQL when DATABASE_URL is set.

The ranking embeds words by hashing them (a stand-in for a sentence encoder: no model download at build time),
through the same torch operations an encoder's output goes through.
"""

from __future__ import annotations

import hashlib
import os

import psycopg2
import torch
from fastapi import FastAPI
from pydantic import BaseModel

DIMENSIONS = 512
DATABASE_URL = os.environ.get("DATABASE_URL", "")

app = FastAPI(title="venvprune api example")


class Question(BaseModel):
    question: str
    passages: list[str]


def embed(texts: list[str]) -> torch.Tensor:
    """One L2-normalised row per text: a bag of hashed words."""
    vectors = torch.zeros(len(texts), DIMENSIONS)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            digest = hashlib.blake2b(word.strip(".,;:?!").encode(), digest_size=4).digest()
            vectors[row, int.from_bytes(digest, "little") % DIMENSIONS] += 1.0
    return torch.nn.functional.normalize(vectors, dim=1)


def log_question(question: str, answer: str) -> None:
    with psycopg2.connect(DATABASE_URL) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS questions (question text, answer text, at timestamptz)")
        cursor.execute("INSERT INTO questions VALUES (%s, %s, now())", (question, answer))


@app.post("/ask")
def ask(question: Question) -> dict[str, object]:
    scores = embed(question.passages) @ embed([question.question])[0]
    best = int(torch.argmax(scores))
    answer = question.passages[best]
    if DATABASE_URL:
        log_question(question.question, answer)
    return {"answer": answer, "score": round(float(scores[best]), 4)}


@app.get("/health")
def health() -> dict[str, object]:
    return {"status": "ok", "torch": torch.__version__, "libpq": psycopg2.extensions.libpq_version()}

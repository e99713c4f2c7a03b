"""A small API: a health check and an item store in memory."""

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="venvprune example")


class Item(BaseModel):
    name: str
    price: float


ITEMS: dict[int, Item] = {}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.put("/items/{item_id}")
def put_item(item_id: int, item: Item) -> Item:
    ITEMS[item_id] = item
    return item


@app.get("/items/{item_id}")
def get_item(item_id: int) -> Item:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return ITEMS[item_id]

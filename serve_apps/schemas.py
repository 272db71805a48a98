"""Public HTTP schemas of the search API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class SearchResult(BaseModel):
    id: int = Field(description="Pulse document id")
    title: str
    url: str = Field(description="Canonical URL of the document")
    published_at: datetime | None
    score: float = Field(description="Cosine similarity to the query (higher is better)")


class ModelRef(BaseModel):
    id: int = Field(description="Registry entry of the model that served the search")
    name: str


class SearchResponse(BaseModel):
    query: str
    model: ModelRef
    level: str = Field(description="document or chunk: what the query was matched against")
    results: list[SearchResult]


class ErrorDetail(BaseModel):
    field: str
    reason: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_request")
    message: str = Field(description="What failed and what to do")
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model: str | None = None
    model_id: int | None = None
    vectors: int | None = None
    reason: str | None = None

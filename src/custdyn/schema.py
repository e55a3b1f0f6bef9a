"""The data contract: the tables every room agrees on, their columns, types and allowed values.

Nothing here imports the rest of custdyn. Readers (``custdyn.io``) produce Arrow record
batches with :data:`INTERACTIONS_SCHEMA` or :data:`CUSTOMERS_SCHEMA`; the store writes them
into DuckDB tables whose DDL lives in ``custdyn.store``.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

CHANNELS: Final = ("email", "phone", "meeting", "chat", "ticket", "web", "store", "other")
KINDS: Final = (
    "contact",
    "account_opened",
    "order",
    "order_issue",
    "return",
    "support",
    "feedback",
    "survey",
    "cancellation",
    "other",
)
DIRECTIONS: Final = ("inbound", "outbound")
EMOTIONS: Final = (
    "anger",
    "anticipation",
    "disgust",
    "fear",
    "joy",
    "sadness",
    "surprise",
    "trust",
)
SENTIMENTS: Final = ("negative", "neutral", "positive")

#: Kinds that count as purchases unless a setting says otherwise.
PURCHASE_KINDS: Final = ("order",)

TIMESTAMP = pa.timestamp("us", tz="UTC")
AMOUNT = pa.decimal128(18, 4)

INTERACTIONS_SCHEMA: Final = pa.schema(
    [
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("occurred_at", TIMESTAMP, nullable=False),
        pa.field("channel", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("amount", AMOUNT),
        pa.field("currency", pa.string()),
        pa.field("subject", pa.string()),
        pa.field("text", pa.string()),
        pa.field("thread_id", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("attributes", pa.string()),  # JSON object text
    ]
)

CUSTOMERS_SCHEMA: Final = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("email", pa.string()),
        pa.field("segment", pa.string()),
        pa.field("country", pa.string()),
        pa.field("language", pa.string()),
        pa.field("created_at", TIMESTAMP),
        pa.field("attributes", pa.string()),  # JSON object text
    ]
)

INTERACTION_FIELDS: Final = tuple(INTERACTIONS_SCHEMA.names)
CUSTOMER_FIELDS: Final = tuple(CUSTOMERS_SCHEMA.names)

#: Fields a record must carry (after mapping) to be loaded.
REQUIRED_INTERACTION_FIELDS: Final = ("customer_id", "occurred_at")
REQUIRED_CUSTOMER_FIELDS: Final = ("customer_id",)

#: Values a person or a CRM commonly writes, resolved without a mapping file.
CHANNEL_SYNONYMS: Final = {
    "e-mail": "email",
    "mail": "email",
    "call": "phone",
    "phone call": "phone",
    "telephone": "phone",
    "visit": "meeting",
    "face-to-face": "meeting",
    "in person": "meeting",
    "live chat": "chat",
    "support ticket": "ticket",
    "website": "web",
    "online": "web",
    "shop": "store",
    "in store": "store",
}
KIND_SYNONYMS: Final = {
    "purchase": "order",
    "sale": "order",
    "transaction": "order",
    "complaint": "feedback",
    "refund": "return",
    "signup": "account_opened",
    "sign-up": "account_opened",
    "account": "account_opened",
    "churn": "cancellation",
    "cancel": "cancellation",
}
DIRECTION_SYNONYMS: Final = {
    "in": "inbound",
    "incoming": "inbound",
    "received": "inbound",
    "out": "outbound",
    "outgoing": "outbound",
    "sent": "outbound",
}


#: One row per (interaction, engine): what the text room says about a message.
TEXT_SIGNALS_SCHEMA: Final = pa.schema(
    [
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("engine", pa.string(), nullable=False),  # name:version, e.g. "default:1"
        pa.field("language", pa.string()),  # ISO 639-1
        pa.field("language_confidence", pa.float32()),
        pa.field("sentiment", pa.string()),  # one of SENTIMENTS
        pa.field("sentiment_score", pa.float32()),  # in [-1, 1]
        pa.field("confidence", pa.float32()),
        *[pa.field(e, pa.float32()) for e in EMOTIONS],  # probability of each emotion
        pa.field("intent_to_switch", pa.bool_()),
        pa.field("mentions", pa.string()),  # JSON list of {competitor, alias, snippet, intent}
        pa.field("theme_id", pa.string()),
        pa.field("scored_at", TIMESTAMP),
    ]
)

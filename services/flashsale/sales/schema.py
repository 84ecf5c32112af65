"""The sales service's tables, in one place: the migrations that build them, applied in order (never edit an
applied one; append a new script).

| table | owned by |
| --- | --- |
| sales | sale_store |
| sale_partitions, sale_pools | stock_store |
| decisions, decision_batches | decision_store |
| reservations | reservation_store |
| partition_offsets | offset_store |
"""

from flashsale.common import database

_BATCHES = """
CREATE TABLE decision_batches (
  sale_id TEXT NOT NULL,
  partition INTEGER NOT NULL,
  start_offset BIGINT NOT NULL,
  end_offset BIGINT NOT NULL,
  decided_at BIGINT NOT NULL,
  PRIMARY KEY (sale_id, partition, start_offset)
);
INSERT INTO decision_batches (sale_id, partition, start_offset, end_offset, decided_at)
  SELECT sale_id, partition, MIN(log_offset), MAX(log_offset) + 1, decided_at FROM decisions
  WHERE log_offset >= 0 GROUP BY sale_id, partition, decided_at
"""

MIGRATIONS: list[database.Migration] = [
    """
CREATE TABLE sales (
  sale_id TEXT PRIMARY KEY,
  product_id TEXT NOT NULL,
  price_cents BIGINT NOT NULL,
  stock BIGINT NOT NULL,
  per_user_limit INTEGER NOT NULL,
  starts_at BIGINT NOT NULL,
  ends_at BIGINT NOT NULL,
  remaining BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= stock),
  created_at BIGINT NOT NULL
);
CREATE INDEX sales_by_product ON sales (product_id, created_at);
CREATE TABLE decisions (
  request_id TEXT PRIMARY KEY,
  sale_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  reservation_id TEXT NOT NULL DEFAULT '',
  decided_at BIGINT NOT NULL
);
CREATE INDEX decisions_by_sale ON decisions (sale_id, outcome);
CREATE TABLE user_counters (
  sale_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  qty INTEGER NOT NULL CHECK (qty >= 0),
  PRIMARY KEY (sale_id, user_id)
);
CREATE TABLE reservations (
  reservation_id TEXT PRIMARY KEY,
  request_id TEXT NOT NULL UNIQUE,
  sale_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  quantity INTEGER NOT NULL,
  status TEXT NOT NULL,
  release_reason TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX reservations_by_sale ON reservations (sale_id, status)
""",
    """
ALTER TABLE sales ADD COLUMN partitions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN reserve BIGINT NOT NULL DEFAULT 0;
ALTER TABLE decisions ADD COLUMN partition INTEGER NOT NULL DEFAULT -1;
ALTER TABLE decisions ADD COLUMN log_offset BIGINT NOT NULL DEFAULT -1;
ALTER TABLE decisions ADD COLUMN arrived_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE reservations ADD COLUMN partition INTEGER NOT NULL DEFAULT -1;
CREATE INDEX decisions_by_log ON decisions (sale_id, partition, log_offset);
CREATE TABLE sale_partitions (
  sale_id TEXT NOT NULL,
  partition INTEGER NOT NULL,
  stock BIGINT NOT NULL,
  remaining BIGINT NOT NULL CHECK (remaining >= 0),
  decided BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (sale_id, partition)
);
CREATE TABLE sale_pools (
  sale_id TEXT PRIMARY KEY,
  stock BIGINT NOT NULL,
  remaining BIGINT NOT NULL CHECK (remaining >= 0)
);
CREATE TABLE partition_offsets (
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset BIGINT NOT NULL,
  published_offset BIGINT NOT NULL,
  PRIMARY KEY (topic, partition)
)
""",
    # every query by sale uses decisions_by_log's (sale_id, …) prefix; one index less to update per decision
    "DROP INDEX decisions_by_sale",
    # one purchase engine: every sale is decided by the pipeline. A sale never prepared (decided one request at a
    # time before) becomes a sale of one partition holding what it had; its decisions and reservations belong to
    # that partition. Claims of that path never outlived their transaction; none is left to move.
    """
INSERT INTO sale_partitions (sale_id, partition, stock, remaining, decided)
  SELECT s.sale_id, 0, s.stock, s.remaining, (SELECT COUNT(*) FROM decisions d WHERE d.sale_id = s.sale_id)
  FROM sales s WHERE s.partitions = 0;
INSERT INTO sale_pools (sale_id, stock, remaining) SELECT sale_id, 0, 0 FROM sales WHERE partitions = 0;
UPDATE decisions SET partition = 0 WHERE partition = -1;
UPDATE reservations SET partition = 0 WHERE partition = -1;
DELETE FROM decisions WHERE outcome = 'pending';
UPDATE sales SET partitions = 1 WHERE partitions = 0;
ALTER TABLE sales DROP COLUMN remaining
""",
    # a decision costs one row and the cheapest index that keeps a request id's first decision exact. On PostgreSQL
    # the request id's B-tree (a random insert per decision) becomes a hash exclusion constraint (still one decision
    # per id, concurrent writers included), and the (sale, partition, offset) B-tree becomes decision_batches: one
    # row per partition batch of a round, which finds a batch's decisions through a BRIN index on decided_at (rows
    # are appended in the order they are decided). SQLite keeps its B-trees and gains the batches.
    {
        "postgres": f"""
ALTER TABLE decisions DROP CONSTRAINT decisions_pkey;
ALTER TABLE decisions ADD CONSTRAINT decisions_once EXCLUDE USING hash (request_id WITH =);
DROP INDEX decisions_by_log;
CREATE INDEX decisions_by_time ON decisions USING brin (decided_at);
{_BATCHES}""",
        "sqlite": _BATCHES,
    },
    # what a user holds is the sum of their reservations not released, found by an index: an index entry per
    # reservation costs less than a counter's upsert per buyer in every round, and cannot drift from them
    """
CREATE INDEX reservations_by_user ON reservations (sale_id, user_id);
DROP TABLE user_counters
""",
    # every query of a sale's reservations is served by reservations_by_user's (sale_id, …) prefix: one index less
    # to update per reservation
    "DROP INDEX reservations_by_sale",
]

-- Reserved: migration 012 belongs to the pooler branch (schema markers in
-- SQL). This empty file only keeps the numbering contiguous for 013 until
-- that branch merges; delete it then (listMigrations refuses two 012s).
SELECT 1;

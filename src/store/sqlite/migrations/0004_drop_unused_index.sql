-- events_kind served no query; every event insert paid for it.
DROP INDEX IF EXISTS events_kind;

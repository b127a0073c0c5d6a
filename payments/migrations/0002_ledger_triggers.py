"""PostgreSQL triggers that guard the ledger whatever code writes to it (django-hordak's idea).

* ``payments_posting_balanced``: a constraint trigger, DEFERRABLE INITIALLY DEFERRED, so it runs
  at commit once all of an entry's postings exist: it rejects an entry with fewer than two
  postings or whose postings do not sum to zero in each currency.
* ``payments_*_immutable``: postings and journal entries cannot be updated or deleted (a
  correction is a new entry). TRUNCATE (test teardown) does not fire row triggers.

SQLite (the embedded demo) gets none of this; the services keep the same rules.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION payments_check_entry_balanced() RETURNS trigger AS $$
DECLARE
    legs integer;
    bad record;
BEGIN
    SELECT count(*) INTO legs FROM payments_posting WHERE entry_id = NEW.entry_id;
    IF legs < 2 THEN
        RAISE EXCEPTION 'journal entry % has % posting(s); at least two are needed', NEW.entry_id, legs
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT currency, sum(amount) AS total INTO bad FROM payments_posting
     WHERE entry_id = NEW.entry_id GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % % left over', NEW.entry_id, bad.total, bad.currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER payments_posting_balanced
    AFTER INSERT OR UPDATE ON payments_posting
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payments_check_entry_balanced();

CREATE OR REPLACE FUNCTION payments_ledger_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable; book a correcting entry instead', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_posting_immutable BEFORE UPDATE OR DELETE ON payments_posting
    FOR EACH ROW EXECUTE FUNCTION payments_ledger_immutable();
CREATE TRIGGER payments_journalentry_immutable BEFORE UPDATE OR DELETE ON payments_journalentry
    FOR EACH ROW EXECUTE FUNCTION payments_ledger_immutable();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS payments_journalentry_immutable ON payments_journalentry;
DROP TRIGGER IF EXISTS payments_posting_immutable ON payments_posting;
DROP FUNCTION IF EXISTS payments_ledger_immutable();
DROP TRIGGER IF EXISTS payments_posting_balanced ON payments_posting;
DROP FUNCTION IF EXISTS payments_check_entry_balanced();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial")]

    operations = [migrations.RunPython(forward, backward, elidable=False)]

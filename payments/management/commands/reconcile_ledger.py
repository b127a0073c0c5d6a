"""``manage.py reconcile_ledger``: prove the ledger's invariants now; exit 1 on a mismatch."""

import json

from django.core.management.base import BaseCommand, CommandError

from payments.ledger import ledger_reconcile


class Command(BaseCommand):
    help = "Check that every entry sums to zero and every balance equals the sum of its postings."

    def handle(self, *args, **options):
        run = ledger_reconcile()
        self.stdout.write(f"checked {run.accounts_checked} accounts and {run.entries_checked} entries")
        if not run.ok:
            self.stderr.write(json.dumps(run.mismatches, indent=2))
            raise CommandError(f"ledger mismatch: {len(run.mismatches)} problem(s), run {run.id}")
        self.stdout.write(self.style.SUCCESS("ledger ok"))

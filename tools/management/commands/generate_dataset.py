from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from tools.generators.datasets import BULK_MODELS, DEFAULT_SEED, DatasetError, load_dataset, size_deals


class Command(BaseCommand):
    help = (
        "Load a benchmark dataset of SPEC §6 into an empty migrated database with COPY: S (1,000 deals) or "
        "L (1,000,000 deals, ~4M stage changes, ~2M activities, 300k leads), or --deals N. Deterministic per seed "
        "and day."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        size = parser.add_mutually_exclusive_group(required=True)
        size.add_argument(
            "--size", choices=["S", "M", "L", "s", "m", "l"], help="A dataset size: S or L of SPEC §6, or M (100,000)."
        )
        size.add_argument("--deals", type=int, help="Any other number of deals, with the same shape.")
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"Random seed (default {DEFAULT_SEED}).")
        parser.add_argument(
            "--replace", action="store_true", help="Delete existing users, pipelines, customers, deals and leads first."
        )
        parser.add_argument(
            "--no-vacuum", action="store_true", help="Skip the VACUUM of the loaded tables after the load."
        )

    def handle(self, *args, size: str | None, deals: int | None, seed: int, replace: bool, no_vacuum: bool, **opts):
        count = size_deals(size) if size else deals
        if count is None or count < 1:
            raise CommandError("--deals must be at least 1.")
        try:
            summary = load_dataset(deals=count, seed=seed, replace=replace, progress=self.stdout.write)
        except DatasetError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(summary.report())
        if not no_vacuum and not connection.in_atomic_block:
            # What autovacuum would do some time later, done now so that a benchmark does not race it: set the
            # visibility map (index-only scans) and hint bits of the freshly loaded rows.
            with connection.cursor() as cursor:
                for model in BULK_MODELS:
                    cursor.execute(f"VACUUM {model._meta.db_table}")
            self.stdout.write("Vacuumed the loaded tables.")

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.models import Deal
from tools.generators.demo import DemoSeedError, existing_demo_logins, logins_table, seed_demo


class Command(BaseCommand):
    help = (
        "Create realistic demo data: users in three teams, two pipelines, customers, deals with full stage history, "
        "activities and leads. The same --seed on the same day gives the same data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deals", type=int, default=2000, help="How many deals to create (default 2000).")
        parser.add_argument("--seed", type=int, default=42, help="Seed of the random generator (default 42).")
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when any deal exists (for first-run setup scripts)."
        )

    def handle(self, *args, deals: int, seed: int, if_empty: bool, **options) -> None:
        if deals < 0:
            raise CommandError("--deals must not be negative.")
        if if_empty and Deal.objects.exists():
            self.stdout.write("Deals already exist; not seeding demo data.")
            logins = existing_demo_logins()
            if logins:
                self.stdout.write(f"\nDemo logins:\n{logins_table(logins)}")
            return
        try:
            summary = seed_demo(deals=deals, seed=seed, stdout=self.stdout)
        except DemoSeedError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(summary.report())

from django.core.management.base import BaseCommand, CommandError

from forecasting.services import recompute_metrics


class Command(BaseCommand):
    help = "Recompute every metric now, in this process, into a new snapshot (SPEC §3)."

    def handle(self, *args, **options) -> None:
        run = recompute_metrics()
        if run is None:
            raise CommandError("Another metrics recompute is running; try again when it has finished.")
        self.stdout.write(f"Run {run.pk}: {run.row_count} rows in {run.duration_seconds:.2f} s")

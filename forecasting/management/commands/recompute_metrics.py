from django.core.management.base import BaseCommand, CommandError

from forecasting.services import recompute_history_metrics, recompute_metrics


class Command(BaseCommand):
    help = (
        "Recompute every metric now, in this process, into a new snapshot (SPEC §3), then the backtest and "
        "calibration (SPEC §3a) unless --without-history."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--without-history",
            action="store_true",
            help="Skip the backtest and calibration (minutes on a million deals): the run keeps the previous run's.",
        )

    def handle(self, *args, without_history: bool = False, **options) -> None:
        run = recompute_metrics()
        if run is None:
            raise CommandError("Another metrics recompute is running; try again when it has finished.")
        self.stdout.write(f"Run {run.pk}: {run.row_count} rows in {run.duration_seconds:.2f} s")
        if without_history:
            return
        if recompute_history_metrics() is None:
            raise CommandError("The backtest and calibration could not run now (another computation of them).")
        self.stdout.write(f"Run {run.pk}: backtest and calibration rewritten")

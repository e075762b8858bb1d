from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from pipeline.exporting import export_csv, export_kinds


class Command(BaseCommand):
    help = (
        "Write deals, stage_changes, leads, organizations, contacts or activities as CSV to standard output, "
        "in the columns the import reads. --user limits the rows to what that user may see."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=export_kinds())
        parser.add_argument("--user", help="Export only what this user may see (default: everything).")

    def handle(self, *args, kind: str, user: str | None, **options) -> None:
        viewer = None
        if user:
            viewer = User.objects.filter(username=user).first()
            if viewer is None:
                raise CommandError(f"No user {user!r}.")
        for line in export_csv(kind=kind, user=viewer):
            self.stdout.write(line, ending="")

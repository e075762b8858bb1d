import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from pipeline.importing import FileProblem, ImportOptions, read_header, run_import, suggest_mapping, write_report_csv
from pipeline.models import ImportJob, ImportKind


def _pairs(values: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        left, sep, right = value.partition("=")
        if not sep:
            raise CommandError(f"{flag} takes LEFT=RIGHT, not {value!r}.")
        pairs.append((left.strip(), right.strip()))
    return pairs


class Command(BaseCommand):
    help = (
        "Import a CSV file of deals, stage_changes, field_changes, leads, organizations or contacts. Columns are "
        "mapped from the "
        "header (synonyms such as 'Deal Stage' or 'Sales Agent' are recognised); --map adds or overrides. "
        "All or nothing: when any row is refused, nothing is written and the per-row report is printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=ImportKind.values)
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="CSVCOL=field",
            help="Map a CSV column to a field (repeatable); CSVCOL= (empty field) ignores the column.",
        )
        parser.add_argument(
            "--value",
            action="append",
            default=[],
            metavar="FIELD:VALUE=OURS",
            help="Map a value of a field, e.g. --value 'stage:Engaging=Qualification' (repeatable).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")
        parser.add_argument("--date-order", choices=["dmy", "mdy"], help="How to read dates like 03/04/2026.")
        parser.add_argument(
            "--create-missing",
            action="store_true",
            help="Create unknown organizations, contacts, lost reasons, and owners (as inactive users).",
        )
        parser.add_argument("--encoding", help="The file's encoding (default: detected).")
        parser.add_argument("--user", help="Username the import runs as (owner of deals without one).")
        parser.add_argument("--report", type=Path, help="Also write the per-row report to this CSV file.")

    def handle(self, *args, kind: str, file: Path, **options) -> None:
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        actor = None
        if options["user"]:
            actor = User.objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user {options['user']!r}.")
        value_map: dict[str, dict[str, str]] = {}
        for left, ours in _pairs(options["value"], "--value"):
            field, sep, theirs = left.partition(":")
            if not sep:
                raise CommandError(f"--value takes FIELD:VALUE=OURS, not {left}={ours}.")
            value_map.setdefault(field.strip(), {})[theirs.strip()] = ours
        import_options = ImportOptions(
            date_order=options["date_order"],
            create_missing=options["create_missing"],
            value_map=value_map,
            encoding=options["encoding"],
        )
        try:
            with file.open("rb") as stream:
                header = read_header(stream, encoding=options["encoding"])
        except FileProblem as problem:
            raise CommandError(str(problem)) from problem
        mapping = suggest_mapping(kind, header)
        for column, field in _pairs(options["map"], "--map"):
            mapping = {c: f for c, f in mapping.items() if f != field or not field}
            if field:
                mapping[column] = field
            else:
                mapping.pop(column, None)
        self.stdout.write("Columns: " + ", ".join(f"{c} → {f}" for c, f in mapping.items()))

        job = ImportJob.objects.create(
            kind=kind,
            source_path=str(file.resolve()),
            original_name=file.name,
            mapping=mapping,
            options=import_options.to_json(),
            dry_run=options["dry_run"],
            created_by=actor,
        )
        result = run_import(job)
        if result.ignored_columns:
            self.stdout.write("Ignored columns: " + ", ".join(result.ignored_columns))
        for error in result.errors:
            where = f"row {error.row}" if error.row else "file"
            column = f", column {error.column}" if error.column else ""
            value = f" “{error.value}”" if error.value else ""
            self.stdout.write(f"{where}{column}:{value} {error.message}")
        if options["report"]:
            with options["report"].open("w", newline="", encoding="utf-8") as out:
                write_report_csv(result.errors, out)
        if not result.ok:
            raise CommandError(result.summary())
        self.stdout.write(("Dry run: " if result.dry_run else "") + result.summary())
        sys.stdout.flush()

"""What the deal search reads: `Deal.search_text`, the deal's title, external id, organization name and contact
names on one line each, kept by the database on every path that writes them (services, imports, the admin, raw SQL).

`selectors.search_deals` tests each word against this one column (its trigram index, `deal_search_trgm_idx`, for a
rare word; row by row along the list's order for a common one). Before it, each word first read the ids of every
organization and contact it matched and put them into the deal query: for a word as common as "austin" on L, 6,240
organization ids read in 3.4 ms and 2 ms more for the planner to weigh them, three times the 2.6 ms of the page
itself (docs/performance.md, "Search").

The parts are separated by a newline, which no search word contains (`search_terms` splits on white space), so a word
matches within one part only, as it did when each part was tested on its own column.

Kept by triggers:
- a deal inserted, or updated in one of the parts (or in the text itself: a save of a stale copy), gets its text
  from its own row and its organization's and contact's current names;
- an organization renamed, or a contact whose first or last name changed, rewrites the text of its deals, set-based
  per statement (an import of customers renames many at once).
A bulk load that writes the text itself (the dataset generator, which drops the indexes the lookups would use) is
taken as written; `restamp_search_text` rewrites the text of given deals from the records, as the back-fill does.
"""

from collections.abc import Sequence

from django.db.backends.utils import CursorWrapper

from pipeline.stage_history import BULK_LOAD_SETTING

# Between the parts of a deal's text: white space, so never inside a search word.
SEPARATOR = "\n"

# The deal's parts that its own row holds; an update of any of them (or of the text) rewrites the text.
_OWN_PARTS = ("title", "external_id", "organization_id", "contact_id", "search_text")


def _own_parts(prefix: str) -> str:
    return "(" + ", ".join(f"{prefix}.{column}" for column in _OWN_PARTS) + ")"


TRIGGERS_SQL = f"""
-- The one definition of the text, from a deal's own parts and its customers' current names.
CREATE FUNCTION pipeline_deal_search_text(text, text, bigint, bigint) RETURNS text AS $$
    SELECT concat_ws(E'\\n', $1, $2,
        (SELECT o.name FROM pipeline_organization o WHERE o.id = $3),
        (SELECT concat_ws(E'\\n', c.first_name, c.last_name) FROM pipeline_contact c WHERE c.id = $4))
$$ LANGUAGE sql STABLE;

CREATE FUNCTION pipeline_deal_stamp_search_text() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.search_text <> '' AND current_setting('{BULK_LOAD_SETTING}', true) = 'on' THEN
        RETURN NEW;  -- the loader wrote it (and its lookups would find no index to use)
    END IF;
    NEW.search_text := pipeline_deal_search_text(NEW.title, NEW.external_id, NEW.organization_id, NEW.contact_id);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER deal_stamp_search_text_on_insert BEFORE INSERT ON pipeline_deal
    FOR EACH ROW EXECUTE FUNCTION pipeline_deal_stamp_search_text();
CREATE TRIGGER deal_stamp_search_text BEFORE UPDATE ON pipeline_deal
    FOR EACH ROW WHEN ({_own_parts("NEW")} IS DISTINCT FROM {_own_parts("OLD")})
    EXECUTE FUNCTION pipeline_deal_stamp_search_text();

CREATE FUNCTION pipeline_organizations_renamed() RETURNS trigger AS $$
BEGIN
    UPDATE pipeline_deal d
       SET search_text = pipeline_deal_search_text(d.title, d.external_id, d.organization_id, d.contact_id)
      FROM new_organizations n JOIN old_organizations o ON o.id = n.id
     WHERE d.organization_id = n.id AND n.name IS DISTINCT FROM o.name;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER organizations_renamed_restamp_deals AFTER UPDATE ON pipeline_organization
    REFERENCING OLD TABLE AS old_organizations NEW TABLE AS new_organizations
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline_organizations_renamed();

CREATE FUNCTION pipeline_contacts_renamed() RETURNS trigger AS $$
BEGIN
    UPDATE pipeline_deal d
       SET search_text = pipeline_deal_search_text(d.title, d.external_id, d.organization_id, d.contact_id)
      FROM new_contacts n JOIN old_contacts o ON o.id = n.id
     WHERE d.contact_id = n.id AND (n.first_name, n.last_name) IS DISTINCT FROM (o.first_name, o.last_name);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER contacts_renamed_restamp_deals AFTER UPDATE ON pipeline_contact
    REFERENCING OLD TABLE AS old_contacts NEW TABLE AS new_contacts
    FOR EACH STATEMENT EXECUTE FUNCTION pipeline_contacts_renamed();
"""

DROP_TRIGGERS_SQL = """
DROP TRIGGER contacts_renamed_restamp_deals ON pipeline_contact;
DROP FUNCTION pipeline_contacts_renamed();
DROP TRIGGER organizations_renamed_restamp_deals ON pipeline_organization;
DROP FUNCTION pipeline_organizations_renamed();
DROP TRIGGER deal_stamp_search_text ON pipeline_deal;
DROP TRIGGER deal_stamp_search_text_on_insert ON pipeline_deal;
DROP FUNCTION pipeline_deal_stamp_search_text();
DROP FUNCTION pipeline_deal_search_text(text, text, bigint, bigint);
"""


def deal_search_text(*parts: str | None) -> str:
    """The text of a deal from its parts (title, external id, organization name, contact first and last name), as
    the database writes it: for a loader that writes it itself."""
    return SEPARATOR.join(part for part in parts if part is not None)


def restamp_search_text(cursor: CursorWrapper, deal_ids: Sequence[int] | None = None) -> int:
    """Rewrite the text of `deal_ids` (default: every deal) from the records; return how many changed.

    As a bulk load, so that the statement's other triggers (the metrics' change queue) take it for no change of a
    deal, which it is not. Inside a transaction.
    """
    only = "" if deal_ids is None else "AND d.id = ANY(%(ids)s)"
    cursor.execute("SELECT current_setting(%s, true)", [BULK_LOAD_SETTING])
    (setting,) = cursor.fetchone()
    cursor.execute("SELECT set_config(%s, 'on', true)", [BULK_LOAD_SETTING])
    cursor.execute(
        f"""
        UPDATE pipeline_deal d SET search_text = s.text
          FROM (SELECT d.id, pipeline_deal_search_text(d.title, d.external_id, d.organization_id, d.contact_id) AS text
                  FROM pipeline_deal d WHERE true {only}) s
         WHERE d.id = s.id AND d.search_text IS DISTINCT FROM s.text
        """,
        {"ids": list(deal_ids or [])},
    )
    changed = cursor.rowcount
    cursor.execute("SELECT set_config(%s, %s, true)", [BULK_LOAD_SETTING, setting or "off"])
    return changed

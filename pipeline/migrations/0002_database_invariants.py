"""Invariants that Django's constraint classes cannot express, written in SQL.

- A deal's (stage, pipeline, status) references (stage.id, stage.pipeline, stage.kind): the deal's status is
  always its stage's kind and its stage belongs to its pipeline. A stage with deals cannot change kind or pipeline.
- A pipeline has exactly one won and one lost stage, checked at commit so that a pipeline and its stages can be
  created (or reconfigured) in one transaction.
- StageChange is append-only: UPDATE is refused.
"""

from django.db import migrations

FORWARD = """
ALTER TABLE pipeline_deal
    ADD CONSTRAINT deal_stage_pipeline_status_match_stage
    FOREIGN KEY (stage_id, pipeline_id, status)
    REFERENCES pipeline_stage (id, pipeline_id, kind)
    DEFERRABLE INITIALLY IMMEDIATE;

CREATE FUNCTION pipeline_check_won_and_lost_stage(p_pipeline_id bigint) RETURNS void AS $$
DECLARE
    won_count integer;
    lost_count integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pipeline_pipeline WHERE id = p_pipeline_id) THEN
        RETURN;  -- the pipeline itself was deleted
    END IF;
    SELECT count(*) FILTER (WHERE kind = 'won'), count(*) FILTER (WHERE kind = 'lost')
      INTO won_count, lost_count
      FROM pipeline_stage WHERE pipeline_id = p_pipeline_id;
    IF won_count <> 1 OR lost_count <> 1 THEN
        RAISE EXCEPTION 'pipeline % must have exactly one won and one lost stage (has % won, % lost)',
            p_pipeline_id, won_count, lost_count
            USING ERRCODE = 'check_violation', CONSTRAINT = 'pipeline_one_won_one_lost_stage';
    END IF;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION pipeline_stage_won_lost_trigger() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pipeline_check_won_and_lost_stage(OLD.pipeline_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pipeline_check_won_and_lost_stage(NEW.pipeline_id);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION pipeline_pipeline_won_lost_trigger() RETURNS trigger AS $$
BEGIN
    PERFORM pipeline_check_won_and_lost_stage(NEW.id);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER stage_one_won_one_lost
    AFTER INSERT OR UPDATE OF kind, pipeline_id OR DELETE ON pipeline_stage
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION pipeline_stage_won_lost_trigger();

CREATE CONSTRAINT TRIGGER pipeline_one_won_one_lost
    AFTER INSERT ON pipeline_pipeline
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION pipeline_pipeline_won_lost_trigger();

CREATE FUNCTION pipeline_stagechange_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'stage history is append-only: a StageChange is never updated'
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER stagechange_append_only
    BEFORE UPDATE ON pipeline_stagechange
    FOR EACH ROW EXECUTE FUNCTION pipeline_stagechange_append_only();
"""

BACKWARD = """
DROP TRIGGER stagechange_append_only ON pipeline_stagechange;
DROP FUNCTION pipeline_stagechange_append_only();
DROP TRIGGER pipeline_one_won_one_lost ON pipeline_pipeline;
DROP TRIGGER stage_one_won_one_lost ON pipeline_stage;
DROP FUNCTION pipeline_pipeline_won_lost_trigger();
DROP FUNCTION pipeline_stage_won_lost_trigger();
DROP FUNCTION pipeline_check_won_and_lost_stage(bigint);
ALTER TABLE pipeline_deal DROP CONSTRAINT deal_stage_pipeline_status_match_stage;
"""


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]

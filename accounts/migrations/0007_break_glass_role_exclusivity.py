"""The database's backstop for the break_glass role: never together with
portal_admin (one person would shape the rules and act without approvals)
nor with auditor (the watcher of emergencies would watch their own). The
services check the same rules first (approvals/config/users.py)."""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION accounts_role_exclusivity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held text[];
BEGIN
    PERFORM 1 FROM auth_user WHERE id = NEW.user_id FOR UPDATE;
    SELECT array_agg(g.name ORDER BY g.name) INTO held
        FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
        WHERE ug.user_id = NEW.user_id;
    IF 'portal_admin' = ANY(held) AND held && ARRAY['approver', 'requester', 'break_glass']::text[] THEN
        RAISE EXCEPTION 'role conflict: user % cannot hold portal_admin together with approver or requester or break_glass (roles would be: %)',
            NEW.user_id, array_to_string(held, ', ')
            USING ERRCODE = 'check_violation';
    END IF;
    IF 'auditor' = ANY(held) AND 'break_glass' = ANY(held) THEN
        RAISE EXCEPTION 'role conflict: user % cannot hold auditor together with break_glass (roles would be: %)',
            NEW.user_id, array_to_string(held, ', ')
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION accounts_role_exclusivity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held text[];
BEGIN
    PERFORM 1 FROM auth_user WHERE id = NEW.user_id FOR UPDATE;
    SELECT array_agg(g.name ORDER BY g.name) INTO held
        FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
        WHERE ug.user_id = NEW.user_id;
    IF 'portal_admin' = ANY(held) AND held && ARRAY['approver', 'requester']::text[] THEN
        RAISE EXCEPTION 'role conflict: user % cannot hold portal_admin together with approver or requester (roles would be: %)',
            NEW.user_id, array_to_string(held, ', ')
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def remove(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PREVIOUS, params=None)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0006_passkeys")]
    operations = [migrations.RunPython(install, remove)]

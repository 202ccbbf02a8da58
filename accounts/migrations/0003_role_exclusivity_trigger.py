"""On PostgreSQL the database itself refuses a user who would hold the
portal_admin role together with approver or requester (DESIGN: a portal
admin never approves or requests tickets). The services check the same rule
first and explain it; this is the backstop for every other way of writing
auth_user_groups."""

from django.db import migrations

INSTALL = """
CREATE FUNCTION accounts_role_exclusivity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held text[];
BEGIN
    -- Serialise role changes per user, so two transactions cannot each add
    -- one half of a forbidden pair unseen by the other.
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

CREATE TRIGGER accounts_role_exclusivity
    AFTER INSERT OR UPDATE ON auth_user_groups
    FOR EACH ROW EXECUTE FUNCTION accounts_role_exclusivity();
"""

REMOVE = """
DROP TRIGGER IF EXISTS accounts_role_exclusivity ON auth_user_groups;
DROP FUNCTION IF EXISTS accounts_role_exclusivity();
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INSTALL, params=None)


def remove(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REMOVE, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_hypervisor_principal"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(install, remove)]

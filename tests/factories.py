import factory
from django.contrib.auth import get_user_model

from accounts import role_log
from approvals.roles import ensure_roles
from audit.writer import record


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.invalid")
    password = factory.django.Password("correct-horse-battery-staple")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        # Roles as the server's shell grants them (adduser): in the database
        # and in the audit entry the worker believes them from.
        if create and extracted:
            groups = ensure_roles()
            self.groups.set([groups[role] for role in extracted])
            record(
                "config.user.created",
                actor_name="test",
                obj=self,
                details={"roles": sorted(extracted), **role_log.granted(self)},
            )

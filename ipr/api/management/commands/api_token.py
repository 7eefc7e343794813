from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print a user's API token, making one if the user has none (--rotate replaces it)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--rotate", action="store_true", help="replace the user's token with a new one")
        parser.add_argument("--create-user", action="store_true",
                            help="make the user (with no password: it can use the API only) if it is missing")

    def handle(self, username, rotate=False, create_user=False, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            if not create_user:
                raise CommandError(f"no user {username!r} (pass --create-user to make one)") from None
            user = User.objects.create_user(username)
            user.set_unusable_password()
            user.save()
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)

import ipr.agents.models
from django.db import migrations, models


def sender_id_is_key_id(apps, schema_editor):
    """An existing key may speak for the sender id equal to its key id: the
    one the admin's snippet and `ipr agent-key --format env` have set by
    default, and what the collector assumes for a key file entry without
    sender_ids."""
    SenderKey = apps.get_model("agents", "SenderKey")
    for key in SenderKey.objects.all():
        key.sender_ids = str(key.key_id)
        key.save(update_fields=["sender_ids"])


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="senderkey",
            name="sender_ids",
            field=models.TextField(default="", help_text="The sender ids (ipr_sender_id, IPR_SENDER_ID) that may send with this key, 0..4294967295, one per line. The collector refuses any other as sender_not_allowed.", validators=[ipr.agents.models.validate_sender_ids], verbose_name="sender ids"),
            preserve_default=False,
        ),
        migrations.RunPython(sender_id_is_key_id, migrations.RunPython.noop),
    ]

"""What the archive keeps besides its tables (ipr.traffic.tables)."""
from django.db import models


class IngestedSegment(models.Model):
    """A spool segment whose rows are in the archive. Written in the same
    transaction as the rows, so a segment is never added twice."""
    name = models.CharField(max_length=200, unique=True)
    rows = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The retention task drops old records by time.
        indexes = [models.Index(fields=["at"])]

    def __str__(self):
        return self.name

"""Console forms of the registry: a new model, a version upload, an alias."""

from typing import Any

from django import forms
from django.db.models import QuerySet

from console.models import Team
from registry.choices import ArtifactFormat


class ModelForm(forms.Form):
    """A new model; the team choices are those the person may add models to."""

    name = forms.CharField(max_length=64, help_text="lowercase letters, digits, '-' and '_'")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    tags = forms.CharField(required=False, help_text="comma separated")

    def __init__(self, *args: Any, teams: QuerySet[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)  # declared above; `fields` is typed as any Field
        team.queryset = teams

    def clean_tags(self) -> list[str]:
        """The comma-separated tags as a list, blanks dropped."""
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]


class UploadForm(forms.Form):
    """A version upload from the console; the format is detected when left empty."""

    artifact = forms.FileField()
    format = forms.ChoiceField(choices=[("", "detect"), *ArtifactFormat.choices], required=False)
    signature = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                help_text="TorchScript only: JSON with inputs and outputs")
    description = forms.CharField(required=False)


class AliasForm(forms.Form):
    """Point an alias at a version number."""

    alias = forms.CharField(max_length=64)
    version = forms.IntegerField(min_value=1)

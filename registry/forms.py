from django import forms

from console.models import Team
from registry.choices import ArtifactFormat


class ModelForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="lowercase letters, digits, '-' and '_'")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    tags = forms.CharField(required=False, help_text="comma separated")

    def __init__(self, *args: object, teams: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]


class UploadForm(forms.Form):
    artifact = forms.FileField()
    format = forms.ChoiceField(choices=[("", "detect"), *ArtifactFormat.choices], required=False)
    signature = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                help_text="TorchScript only: JSON with inputs and outputs")
    description = forms.CharField(required=False)


class AliasForm(forms.Form):
    alias = forms.CharField(max_length=64)
    version = forms.IntegerField(min_value=1)

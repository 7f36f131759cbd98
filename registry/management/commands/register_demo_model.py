"""`manage.py register_demo_model`: the demo ONNX model in team 'demo', through the audited services."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand

from console.audit import Actor
from console.services import ensure_team
from registry import services
from registry.choices import CHAMPION
from registry.demo import DEMO_MODEL_NAME, build_demo_onnx
from registry.models import RegisteredModel


class Command(BaseCommand):
    help = "Register the demo ONNX model (built in code) in team 'demo'; does nothing if it is there."

    def handle(self, *args: object, **options: object) -> None:
        actor = Actor.system("register_demo_model")
        team = ensure_team(actor=actor, name="demo", description="Demo models")
        model = RegisteredModel.objects.filter(name=DEMO_MODEL_NAME).first()
        if model is None:
            model = services.create_model(
                actor=actor, name=DEMO_MODEL_NAME, team=team, tags=["demo"],
                description="A 64→16→2 MLP classifier built in code (registry/demo.py).",
            )
        upload = SimpleUploadedFile("demo-mlp.onnx", build_demo_onnx(), content_type="application/octet-stream")
        version, created = services.register_version(actor=actor, model=model, upload=upload)
        if not model.aliases.filter(name=CHAMPION).exists():
            services.set_alias(actor=actor, model=model, name=CHAMPION, version=version)
        state = "registered" if created else "already registered"
        self.stdout.write(f"demo model {model.name} v{version.number} {state} ({version.status})")

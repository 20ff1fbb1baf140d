from django import forms
from django.contrib import admin
from django.http import HttpRequest

from catalog.models import BaseModel
from catalog.services import base_model_add, checkpoint_inspect
from hearth_platform.errors import ApplicationError


class BaseModelAddForm(forms.ModelForm):
    """Adding a model takes its checkpoint path and prices; architecture, context length and the adapter shape
    come from the checkpoint (catalog.services.base_model_add, as `manage.py catalog_add` does)."""

    path = forms.CharField(max_length=500, help_text="HF model folder or .gguf file, as the worker will see it")

    class Meta:
        model = BaseModel
        fields = ["path", "slug", "display_name", "price_input_per_mtok", "price_cached_input_per_mtok",
                  "price_output_per_mtok"]

    def clean_path(self) -> str:
        path = self.cleaned_data["path"]
        try:
            checkpoint_inspect(path=path)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from None
        return path


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ["slug", "public_name", "architecture", "context_length", "price_input_per_mtok",
                    "price_cached_input_per_mtok", "price_output_per_mtok", "is_active"]
    list_filter = ["is_active", "architecture"]
    readonly_fields = ["architecture", "context_length", "weights_uri", "public_name"]

    def get_form(  # type: ignore[no-untyped-def]
        self, request: HttpRequest, obj: BaseModel | None = None, change: bool = False, **kwargs
    ):
        if obj is None:
            kwargs["form"] = BaseModelAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: BaseModel | None = None):  # type: ignore[no-untyped-def]
        if obj is None:
            return BaseModelAddForm.Meta.fields
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: BaseModel | None = None):  # type: ignore[no-untyped-def]
        return self.readonly_fields if obj is not None else []

    def save_model(self, request: HttpRequest, obj: BaseModel, form: forms.ModelForm, change: bool) -> None:
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        try:
            created = base_model_add(
                path=data["path"], slug=data["slug"], display_name=data.get("display_name") or "",
                price_input=data["price_input_per_mtok"], price_output=data["price_output_per_mtok"],
                price_cached=data["price_cached_input_per_mtok"],
            )
        except ApplicationError as exc:  # raced: the form checked the same things a moment ago
            raise forms.ValidationError(exc.message) from None
        for f in created._meta.concrete_fields:  # the admin redirects and logs by the saved object
            setattr(obj, f.attname, getattr(created, f.attname))

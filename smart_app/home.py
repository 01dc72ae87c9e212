"""home blueprint (placeholder until its helper fills it in)."""

from flask import Blueprint

bp = Blueprint("home", __name__)

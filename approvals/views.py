from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from approvals import selectors


@login_required
def home(request):
    tickets = selectors.tickets_visible_to(request.user)[:20]
    return render(request, "approvals/home.html", {"tickets": tickets})

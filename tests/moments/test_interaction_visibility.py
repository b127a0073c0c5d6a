"""WeChat's mutual-friend rule: on a friend's post a viewer sees only the likes and comments of
people who are also the viewer's friends (and their own); the author sees them all.

The cast, all friends of the author ``author``:
    ``viewer``  the one looking;
    ``mutual``  also the viewer's friend;
    ``outsider`` not the viewer's friend;
    ``blocked`` the viewer's friend, but the viewer blocked them.
Each of them (and the author and the viewer) likes the post and comments on it.
"""

from __future__ import annotations

import pytest

from accounts import services as account_services
from moments import services
from tests.conftest import befriend

from .conftest import publish

pytestmark = pytest.mark.django_db

CAST = ("author", "viewer", "mutual", "outsider", "blocked")

# Who ``looker`` sees among those who acted (likes and comments alike).
SEES = {
    "author": {"author", "viewer", "mutual", "outsider", "blocked"},
    "viewer": {"author", "viewer", "mutual"},
    "mutual": {"author", "viewer", "mutual"},  # mutual and viewer are friends; outsider is not
    "outsider": {"author", "outsider"},
    "blocked": {"author", "blocked"},  # the viewer's block hides both ways
}


@pytest.fixture
def cast(make_user):
    people = {name: make_user(handle=name) for name in CAST}
    for name in CAST[1:]:
        befriend(people["author"], people[name])
    befriend(people["viewer"], people["mutual"])
    befriend(people["viewer"], people["blocked"])
    account_services.block_add(user=people["viewer"], target_id=people["blocked"].pk)
    post = publish(people["author"], "look")
    for name in CAST:
        services.like_add(user=people[name], post_id=post.pk)
        services.comment_create(user=people[name], post_id=post.pk, text=f"from {name}")
    return people, post


@pytest.mark.parametrize("looker", CAST)
def test_likes_and_comments_follow_the_mutual_friend_rule(cast, looker, client_for):
    people, post = cast
    handle_of = {p.pk: name for name, p in people.items()}
    client = client_for(people[looker])
    expected = SEES[looker]

    detail = client.get(f"/api/v1/moments/posts/{post.pk}").json()
    assert {handle_of[u["id"]] for u in detail["likes"]} == expected
    assert {c["text"] for c in detail["comments"]} == {f"from {n}" for n in expected}
    assert detail["liked_by_me"] is True

    listed = client.get(f"/api/v1/moments/posts/{post.pk}/comments").json()["results"]
    assert [c["text"] for c in listed] == [f"from {n}" for n in CAST if n in expected]  # oldest first

    feed = client.get("/api/v1/moments/feed").json()["results"]
    assert [p["id"] for p in feed] == [post.pk]
    assert {handle_of[u["id"]] for u in feed[0]["likes"]} == expected
    assert {c["text"] for c in feed[0]["comments"]} == {f"from {n}" for n in expected}


def test_one_sees_ones_own_likes_and_comments_even_among_strangers(client_for, alice, bob, carol):
    # bob and carol are both alice's friends, not each other's.
    befriend(alice, bob)
    befriend(alice, carol)
    post = publish(alice)
    services.like_add(user=carol, post_id=post.pk)
    services.comment_create(user=bob, post_id=post.pk, text="mine")
    body = client_for(bob).get(f"/api/v1/moments/posts/{post.pk}").json()
    assert body["likes"] == []
    assert [c["text"] for c in body["comments"]] == ["mine"]


def test_a_reply_is_seen_by_friends_of_its_writer_and_names_whom_it_answers(client_for, make_user):
    author, viewer, writer, answered = (
        make_user(handle=h) for h in ("author", "viewer", "writer", "answered")
    )
    for other in (viewer, writer, answered):
        befriend(author, other)
    befriend(viewer, writer)  # the viewer knows the reply's writer, not the one answered
    befriend(writer, answered)
    post = publish(author)
    first = services.comment_create(user=answered, post_id=post.pk, text="first")
    services.comment_create(user=writer, post_id=post.pk, text="reply", reply_to_id=first.pk)
    comments = client_for(viewer).get(f"/api/v1/moments/posts/{post.pk}").json()["comments"]
    assert [c["text"] for c in comments] == ["reply"]
    assert comments[0]["reply_to_id"] == first.pk
    assert comments[0]["reply_to_user"]["handle"] == "answered"


def test_unfriending_a_commenter_hides_their_comments_from_me_at_once(client_for, alice, bob, carol):
    for a, b in ((alice, bob), (alice, carol), (bob, carol)):
        befriend(a, b)
    post = publish(alice)
    services.comment_create(user=carol, post_id=post.pk, text="carol was here")
    client = client_for(bob)
    assert [c["text"] for c in client.get(f"/api/v1/moments/posts/{post.pk}").json()["comments"]] == [
        "carol was here"
    ]
    account_services.friend_remove(user=bob, friend_id=carol.pk)
    assert client.get(f"/api/v1/moments/posts/{post.pk}").json()["comments"] == []
    # The author still sees everything on their own post.
    assert len(client_for(alice).get(f"/api/v1/moments/posts/{post.pk}").json()["comments"]) == 1

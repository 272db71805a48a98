"""The recommendation surface: events, profiles' use, recommendations, experiments (routes in the search app)."""  # noqa: E501

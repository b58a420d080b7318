def token_for(name):
    return name

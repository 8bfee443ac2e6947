/* What synfab's LiteX sim modules (synfab_udp, synfab_wire) share: reading a module's JSON
 * arguments and finding its pads. Include after modules.h, error.h and json-c. */
#ifndef SYNFAB_SIM_H
#define SYNFAB_SIM_H

/* The string argument `arg` of the module's JSON `args` (a copy to free), else RC_JSERROR with a
 * line on stderr naming the module `who`. */
static inline int synfab_get_arg(const char *who, char *args, char *arg, char **val)
{
  json_object *jsobj = json_tokener_parse(args);
  json_object *obj = NULL;

  *val = NULL;
  if(!jsobj || !json_object_is_type(jsobj, json_type_object) || !json_object_object_get_ex(jsobj, arg, &obj)) {
    fprintf(stderr, "[%s] missing argument \"%s\" (%s)\n", who, arg, args);
    if(jsobj)
      json_object_put(jsobj);
    return RC_JSERROR;
  }
  *val = strdup(json_object_get_string(obj));
  json_object_put(jsobj);
  return RC_OK;
}

/* The signal of pad `name` in a pad list (NULL if it has none). */
static inline void synfab_get_pad(struct pad_s *pads, char *name, char **signal)
{
  int i = 0;

  *signal = NULL;
  while(pads[i].name) {
    if(!strcmp(pads[i].name, name)) {
      *signal = (char *)pads[i].signal;
      return;
    }
    i++;
  }
}

#endif

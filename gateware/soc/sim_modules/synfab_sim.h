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

/* The byte stream pads of an interface shaped like the sim's "serial" (sink_*: bytes into the SoC,
 * source_*: the SoC's bytes out), as synfab_udp's "eth" and synfab_wire's link pads are. */
static inline void synfab_get_stream_pads(struct pad_s *pads, char **rx, char **rx_valid, char **rx_ready,
                                          char **tx, char **tx_valid, char **tx_ready)
{
  synfab_get_pad(pads, "sink_data", rx);
  synfab_get_pad(pads, "sink_valid", rx_valid);
  synfab_get_pad(pads, "sink_ready", rx_ready);
  synfab_get_pad(pads, "source_data", tx);
  synfab_get_pad(pads, "source_valid", tx_valid);
  synfab_get_pad(pads, "source_ready", tx_ready);
}

#endif
